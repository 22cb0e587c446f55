"""Every storage composition the conformance suite runs against: one entry each.

Factories are module-level functions of a directory, so that a storage can
be rebuilt anywhere; a backend that needs a server skips with the reason.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from fleche.digest import Digest
from fleche.storage import CallMemory, CallPickleFile, FileStorage, ValueMemory, ValuePickleFile
from fleche.testing.storage import Backend


def memory_values(root: Path) -> ValueMemory:
    return ValueMemory()


def memory_calls(root: Path) -> CallMemory:
    return CallMemory()


def pickle_values(root: Path) -> ValuePickleFile:
    return ValuePickleFile(root=root)


def pickle_calls(root: Path) -> CallPickleFile:
    return CallPickleFile(root=root)


def cloudpickle_values(root: Path) -> ValuePickleFile:
    return ValuePickleFile(root=root, serializer="cloudpickle")


def cloudpickle_calls(root: Path) -> CallPickleFile:
    return CallPickleFile(root=root, serializer="cloudpickle")


def dill_values(root: Path) -> ValuePickleFile:
    return ValuePickleFile(root=root, serializer="dill", compression="zlib")


def dill_calls(root: Path) -> CallPickleFile:
    return CallPickleFile(root=root, serializer="dill")


def signed_pickle_values(root: Path) -> ValuePickleFile:
    return ValuePickleFile(root=root, secret_key=["conformance-key", "retired-key"])


def signed_pickle_calls(root: Path) -> CallPickleFile:
    return CallPickleFile(root=root, secret_key="conformance-key")


def inline_values(root: Path) -> ValuePickleFile:
    """Small values in a SQLite database (the default store's call database), large ones as files."""
    from fleche.storage import Sql
    from fleche.storage.small_values import INLINE_LIMIT

    return ValuePickleFile(
        root=root, database=Sql(url=str(root / "calls.db")), inline_limit=INLINE_LIMIT
    )


def postgres_inline_values(root: Path) -> ValuePickleFile:
    """Small values in the PostgreSQL call database, large ones as files."""
    from fleche.storage.small_values import INLINE_LIMIT

    return ValuePickleFile(root=root, database=postgres_calls(root), inline_limit=INLINE_LIMIT)


def s3_inline_values(root: Path):
    """Small values in a SQLite call database, large ones as objects (the s3 template)."""
    from fleche.storage import Sql
    from fleche.storage.small_values import INLINE_LIMIT

    database = Sql(url=str(root / "calls.db"))
    return s3_values(root, database=database, inline_limit=INLINE_LIMIT)


def corrupt_inline(storage, key: Digest) -> None:
    """Tear the entry of ``key`` where it is: its row in the call database, else its file or object."""
    table = storage.database.small_values()
    data = table.get(key)
    if data is None:
        (corrupt_object if hasattr(storage, "endpoint") else corrupt_file)(storage, key)
        return
    table.put(key, data[: len(data) // 2], replace=True)


def corrupt_file(storage: FileStorage, key: Digest) -> None:
    """Tear the file of ``key``: keep its first half, as a crash mid-write without rename would."""
    path = storage._path(key)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def sqlite_calls(root: Path):
    from fleche.storage import Sql

    return Sql(url=str(root / "calls.db"))


def postgres_calls(root: Path):
    """Calls on the test server, in a schema of their own for each ``root``."""
    import pytest

    url = os.environ.get("FLECHE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("FLECHE_TEST_POSTGRES_URL is not set: start a server with .ci/start-postgres")
    from fleche.storage import Sql

    return Sql(url=_private_schema(url, root))


def _private_schema(url: str, root: Path) -> str:
    """``url`` with its search path set to a fresh schema, the same one each time for ``root``."""
    import sqlalchemy

    marker = root / ".postgres-url"
    if marker.exists():
        return marker.read_text()
    schema = f"fleche_{uuid.uuid4().hex[:16]}"
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine.dispose()
    private = sqlalchemy.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(private.render_as_string(hide_password=False))
    return marker.read_text()


def s3_url(root: Path) -> str:
    """A fresh prefix of the test bucket, the same one each time for ``root`` (skips without a server)."""
    import pytest

    url = os.environ.get("FLECHE_TEST_S3_URL")
    if not url:
        pytest.skip("FLECHE_TEST_S3_URL is not set: start a server with .ci/start-seaweedfs")
    marker = root / ".s3-url"
    if not marker.exists():
        root.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{url.rstrip('/')}/{uuid.uuid4().hex[:16]}")
    return marker.read_text()


def s3_values(root: Path, **options):
    """Values in the test server's bucket, under a prefix of their own for each ``root``."""
    from fleche.storage import ValueObjectStore

    endpoint = os.environ.get("FLECHE_TEST_S3_ENDPOINT")
    return ValueObjectStore(s3_url(root), endpoint=endpoint, **options)


def raw_object_store(url: str, endpoint: str | None = None):
    """An obstore store of the test server at ``url`` (``s3://bucket/prefix``), fleche bypassed."""
    from obstore.store import S3Store

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return S3Store(
        bucket,
        prefix=prefix,
        endpoint=endpoint or os.environ["FLECHE_TEST_S3_ENDPOINT"],
        region="us-east-1",
        client_options={"allow_http": True},
    )


def corrupt_object(storage, key: Digest) -> None:
    """Tear the object of ``key`` to its first half, written over it with obstore directly.

    ``AttributeError`` for a storage that is not an object store (the SQL calls beside it).
    """
    import obstore

    store = raw_object_store(storage.url, storage.endpoint)
    path = f"{key[:3]}/{key[3:]}"
    data = bytes(obstore.get(store, path).bytes())
    obstore.put(store, path, data[: len(data) // 2])


def hdf5_values(root: Path):
    from fleche.storage import ValueBagOfHoldingH5File

    return ValueBagOfHoldingH5File(root=root, prefix_length=0)


def hdf5_calls(root: Path):
    from fleche.storage import CallBagOfHoldingH5File

    return CallBagOfHoldingH5File(root=root, prefix_length=0)


def hdf5_grouped_values(root: Path):
    """Values grouped 16 shared files to a store, so most writes land in a file with others."""
    from fleche.storage import ValueBagOfHoldingH5File

    return ValueBagOfHoldingH5File(root=root, prefix_length=1)


def hdf5_grouped_calls(root: Path):
    from fleche.storage import CallBagOfHoldingH5File

    return CallBagOfHoldingH5File(root=root, prefix_length=1)


def corrupt_hdf5(storage, key: Digest) -> None:
    """Tear the HDF5 file holding ``key`` (its shared file when grouped) to its first half."""
    path, _ = storage.location(key)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BACKENDS: list[Backend] = [
    Backend("memory", values=memory_values, calls=memory_calls),
    Backend(
        "pickle", values=pickle_values, calls=pickle_calls, corrupt=corrupt_file, processes=True
    ),
    Backend(
        "cloudpickle",
        values=cloudpickle_values,
        calls=cloudpickle_calls,
        corrupt=corrupt_file,
        processes=True,
    ),
    Backend("dill", values=dill_values, calls=dill_calls, corrupt=corrupt_file, processes=True),
    Backend(
        "signed-pickle",
        values=signed_pickle_values,
        calls=signed_pickle_calls,
        corrupt=corrupt_file,
        processes=True,
    ),
    Backend(
        "sqlite", values=pickle_values, calls=sqlite_calls, corrupt=corrupt_file, processes=True
    ),
    Backend(
        "postgres", values=pickle_values, calls=postgres_calls, corrupt=corrupt_file, processes=True
    ),
    Backend(
        "sqlite-inline",
        values=inline_values,
        calls=sqlite_calls,
        corrupt=corrupt_inline,
        processes=True,
    ),
    Backend(
        "postgres-inline",
        values=postgres_inline_values,
        calls=postgres_calls,
        corrupt=corrupt_inline,
        processes=True,
    ),
    Backend("s3", values=s3_values, calls=sqlite_calls, corrupt=corrupt_object, processes=True),
    Backend(
        "s3-inline",
        values=s3_inline_values,
        calls=sqlite_calls,
        corrupt=corrupt_inline,
        processes=True,
    ),
    Backend("hdf5", values=hdf5_values, calls=hdf5_calls, corrupt=corrupt_hdf5, processes=True),
    Backend(
        "hdf5-grouped",
        values=hdf5_grouped_values,
        calls=hdf5_grouped_calls,
        corrupt=corrupt_hdf5,
        processes=True,
    ),
]
