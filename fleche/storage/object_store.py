"""Values in S3-compatible object storage, one object per key, through :mod:`obstore`.

A key ``a3f9c1…`` is the object ``<prefix>/a3f/9c1…`` of the bucket: the
fan-out of :class:`~fleche.storage.file.FileStorage`, so a short digest
(``expand``/``shrink``) lists one "directory" of a few hundred names, not
the whole store.  Each object holds exactly the bytes of a pickle file
(:class:`~fleche.storage.pickle_file.PickleCodec`: header, xxh3 check or
HMAC signature, optional compression), so a damaged or forged object reads
as a miss with a :class:`~fleche.errors.CorruptEntryWarning`.

Objects are content-addressed and written once, with a conditional
create (``If-None-Match: *``): when two writers race for a key, one
creates it and the other's refusal is a success, since both hold the same
content.  Only an object read as damaged in this process is overwritten.
A miss thus costs one request per new value.  A value this process found
stored (created, or refused as there already) is not sent again for
:data:`PRESENT_SECONDS` (an argument repeated through a sweep), well
within the hour :meth:`~fleche.caches.Cache.gc` leaves a young value
alone; a large one is asked for (``HEAD``) before it is uploaded.  A
call's arguments are encoded before its body runs and sent on a
background thread (:meth:`ValueObjectStore.save_ahead`), so their writes
overlap the body and the result's; the cache settles them before it
records the call.  A hit copies the object's bytes once, into the value
handed back: the check reads obstore's buffer in place.

Credentials come from the standard AWS environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION``...) as :mod:`obstore` reads them, or from a named profile
of the AWS configuration files (through boto3); they are never fields of
the storage, so neither its pickle nor its ``to_config()`` carries them.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import obstore
from obstore.exceptions import AlreadyExistsError
from obstore.store import S3Store

from ..digest import DIGEST_LENGTH, Digest
from ..errors import ConfigError, CorruptEntryWarning, warn
from .background_writes import PendingWrites
from .base import StorageBackend, ValueMixin
from .destructuring import INLINE_DEPTH, DestructuringMixin
from .pickle_file import PickleCodec
from .small_values import KEPT, SmallValues

__all__ = [
    "ForkedClientError",
    "ObjectStoreBackend",
    "ValueObjectStore",
    "parse_s3_url",
    "profile_credentials",
]

#: Key characters of the fan-out "directory" (as :attr:`FileStorage.fanout`).
FANOUT = 3
_HEX = frozenset("0123456789abcdef")
#: Seconds a key this process found stored is trusted to be there without asking.
PRESENT_SECONDS = 60.0
#: Encoded entries larger than this are asked for (one ``HEAD``) before they are uploaded.
LARGE = 1 << 20
#: What a put sends: the key, the encoded entry, and whether it overwrites a damaged object.
Outgoing = tuple[str, bytes, bool]


class ForkedClientError(RuntimeError):
    """obstore was used before this process was forked: its client cannot run here."""


#: Whether obstore ran in this process, and whether it ran in a parent this one was forked from.
_runtime = {"used": False, "forked": False}


def _after_fork() -> None:
    _runtime["forked"] = _runtime["used"]


os.register_at_fork(after_in_child=_after_fork)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix`` (the prefix without slashes at its ends)."""
    scheme, _, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not bucket:
        raise ConfigError(f"an object store url is 's3://bucket/prefix', not {url!r}")
    return bucket, prefix.strip("/")


def profile_credentials(profile: str) -> Any:
    """An obstore credential provider reading the AWS profile ``profile`` (files, SSO, roles)."""
    try:
        import boto3
        from botocore.exceptions import ProfileNotFound
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError as err:
        raise ConfigError(
            f"profile = {profile!r} needs boto3 to read the AWS configuration: pip install boto3"
        ) from err
    try:
        return Boto3CredentialProvider(boto3.Session(profile_name=profile))
    except ProfileNotFound as err:
        raise ConfigError(f"no AWS profile {profile!r} in the AWS configuration files") from err


def _path(key: str) -> str:
    """The object name of a full key under the store's prefix: ``abc/<rest>``."""
    if len(key) != DIGEST_LENGTH:
        raise KeyError(f"{key!r} is not a full digest of {DIGEST_LENGTH} characters")
    return f"{key[:FANOUT]}/{key[FANOUT:]}"


def _key_of(path: str) -> str | None:
    """The key an object name (relative to the prefix) stands for; ``None`` for a foreign object."""
    head, _, rest = path.rpartition("/")
    head = head.rpartition("/")[2]
    key = head + rest
    if len(head) != FANOUT or len(key) != DIGEST_LENGTH or not _HEX.issuperset(key):
        return None
    return key


@dataclasses.dataclass(frozen=True)
class ObjectStoreBackend(PickleCodec, StorageBackend):
    """Entries as objects in an S3-compatible bucket (see the module docstring for the layout).

    ``ObjectStoreBackend(url, *, endpoint=None, region=None, secret_key=None,
    serializer="pickle", compression=None, ...)``.

    Parameters
    ----------
    url
        ``s3://bucket/prefix``: the bucket, and the prefix every object
        name of this store starts with (may be empty).
    endpoint
        The server, e.g. ``http://127.0.0.1:8333`` for SeaweedFS or MinIO;
        ``None`` for AWS itself.  Plain ``http://`` is allowed.
    region
        The bucket's region; ``None`` reads ``AWS_REGION`` or
        ``AWS_DEFAULT_REGION`` (``us-east-1`` when neither is set and an
        endpoint is given).
    profile
        A profile of the AWS configuration files (``~/.aws/credentials``,
        ``AWS_CONFIG_FILE``...) to take the credentials from, read through
        boto3; ``None`` reads the ``AWS_*`` environment variables.
    secret_key, serializer, compress, compression, compression_level
        As for pickle files (:class:`~fleche.storage.pickle_file.PickleCodec`).
    """

    url: str
    _: dataclasses.KW_ONLY
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None
    #: Keys that read as damaged in this process: the next put overwrites them.
    _damaged: set[str] = dataclasses.field(
        default_factory=set, init=False, repr=False, compare=False
    )
    #: Keys found stored, oldest first, with the ``time.monotonic()`` they were.
    _present: dict[str, float] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _store: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _writes: PendingWrites = dataclasses.field(
        default_factory=PendingWrites, init=False, repr=False, compare=False
    )

    persistent: ClassVar[bool] = True
    supports_prefix_range: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        bucket, prefix = parse_s3_url(self.url)
        options: dict[str, Any] = {}
        if self.endpoint is not None:
            options["endpoint"] = self.endpoint
            if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
                options["region"] = "us-east-1"  # what S3-compatible servers accept
        if self.region is not None:
            options["region"] = self.region
        client = {"allow_http": True} if (self.endpoint or "").startswith("http://") else None
        if self.profile is not None:
            options["credential_provider"] = profile_credentials(self.profile)
        store = S3Store(bucket, prefix=prefix or None, client_options=client, **options)
        object.__setattr__(self, "_store", store)

    def _client(self) -> Any:
        """The obstore store, unless this process was forked after obstore ran in its parent.

        obstore's I/O threads (tokio) do not survive ``fork()``: a call in
        such a child would hang, and could garble the HTTP connections it
        shares with its parent.  Fail at once, saying what to do instead.
        """
        if _runtime["forked"]:
            raise ForkedClientError(
                "the S3 client (obstore) cannot run in a process forked after it was used; "
                "start worker processes with the 'spawn' or 'forkserver' method "
                "(multiprocessing.get_context('spawn'))"
            )
        _runtime["used"] = True
        return self._store

    # -- primitives ------------------------------------------------------------

    def put(self, value: Any, key: Digest) -> Digest:
        # docstring inherited
        outgoing = self._outgoing(value, key)
        if outgoing is not None:  # else spared, keeping the note of when it was found
            self._send(self._client(), outgoing)
            self._remember(key)
        return key

    def _outgoing(self, value: Any, key: Digest) -> Outgoing | None:
        """The key, entry and overwrite flag a put of ``value`` sends; ``None`` if known stored.

        The entry is encoded here, in the caller's thread: what is sent is
        the value as it was at the put, whenever it is sent.
        """
        damaged = key in self._damaged
        if not damaged and self._known(key):
            return None  # trusted as found then, not as found now: asked again when it is old
        start, payload = self._encode(value, key)
        return key, start + payload, damaged

    def _send(self, client: Any, outgoing: Outgoing) -> None:
        """Write one entry: create-if-absent, or overwrite a damaged one."""
        key, data, overwrite = outgoing
        path = _path(key)
        if overwrite:
            obstore.put(client, path, data)
            self._damaged.discard(key)
        elif len(data) <= LARGE or self._metadata(key) is None:
            try:
                obstore.put(client, path, data, mode="create")
            except AlreadyExistsError:
                pass  # the same content is there already (another writer won the race)

    def _known(self, key: str) -> bool:
        """Whether this process found ``key`` stored less than :data:`PRESENT_SECONDS` ago."""
        seen = self._present.get(key)
        return seen is not None and time.monotonic() - seen < PRESENT_SECONDS

    def _remember(self, key: str) -> None:
        """Note ``key`` as stored now, and forget the keys noted too long ago."""
        present = self._present
        now = time.monotonic()
        present.pop(key, None)
        present[key] = now  # the newest last, so the stale ones are at the front
        for old in list(itertools.islice(present, 8)):
            if now - present.get(old, now) < PRESENT_SECONDS:
                break
            present.pop(old, None)

    def get(self, key: Digest) -> Any:
        # docstring inherited
        data = self._fetch(key)
        if data is None and self._writes.wait(key):  # written ahead: read it once it is sent
            data = self._fetch(key)
        if data is None:
            raise KeyError(key)
        try:
            return self._decode(data, key.encode())
        except Exception as err:
            self._damaged.add(key)
            warn(
                f"fleche: the entry {key} in {self.url} cannot be read "
                f"({type(err).__name__}: {err}); treating it as a miss (it is rewritten when stored again)",
                CorruptEntryWarning,
            )
            raise KeyError(key) from err

    def _fetch(self, key: Digest) -> Any:
        """The bytes of the object of ``key`` (zero-copy, read-only); ``None`` if there is none."""
        try:
            return obstore.get(self._client(), _path(key)).bytes()
        except FileNotFoundError:  # obstore raises it for a missing object
            return None

    def _found(self, key: Digest) -> dict[str, Any] | None:
        """:meth:`_metadata`, after a write of ``key`` started ahead, if it is not there yet."""
        meta = self._metadata(key)
        if meta is None and self._writes.wait(key):
            meta = self._metadata(key)
        return meta

    def _metadata(self, key: Digest) -> dict[str, Any] | None:
        """The metadata of the object of ``key``; ``None`` if there is none."""
        try:
            return obstore.head(self._client(), _path(key))
        except (FileNotFoundError, KeyError):
            return None

    def _contains(self, key: Digest) -> bool:
        # A damaged object still counts as stored (``get`` reports it).
        return self._found(key) is not None

    def stored_at(self, key: Digest) -> float | None:
        # docstring inherited
        meta = self._found(key)
        return None if meta is None else meta["last_modified"].timestamp()

    def _evict(self, key: Digest) -> None:
        # S3 deletes a missing object without complaint: ask first, for the KeyError.
        if self._found(key) is None:
            raise KeyError(key)
        obstore.delete(self._client(), _path(key))
        self._damaged.discard(key)
        self._present.pop(key, None)

    # -- listing ---------------------------------------------------------------

    def list(self) -> Iterator[Digest]:
        # docstring inherited
        return self._listed("")

    def _prefix_range(self, prefix: str) -> Iterator[Digest]:
        # A prefix of at least the fan-out width lists one "directory" from an
        # offset just before the prefix; a shorter one lists from its start.
        return self._listed(prefix.lower())

    def _listed(self, prefix: str) -> Iterator[Digest]:
        """Keys starting with ``prefix``, sorted, from as small a listing as S3 allows.

        ``list(prefix=)`` matches whole path segments, so it names the
        fan-out directory, and ``offset`` (S3's ``start-after``) skips to the
        prefix within it; the listing stops at the first name past it.
        """
        self._writes.wait_all()
        wanted = prefix if len(prefix) <= FANOUT else f"{prefix[:FANOUT]}/{prefix[FANOUT:]}"
        directory = prefix[:FANOUT] if len(prefix) >= FANOUT else None
        offset = wanted[:-1] or None
        for batch in obstore.list(self._client(), prefix=directory, offset=offset):
            for meta in batch:
                path = meta["path"]
                if not path.startswith(wanted):
                    if path > wanted:
                        return
                    continue
                key = _key_of(path)
                if key is not None:
                    yield Digest(key)


@dataclasses.dataclass(frozen=True)
class ValueObjectStore(ValueMixin, DestructuringMixin, SmallValues, ObjectStoreBackend):
    """Values in S3-compatible object storage, e.g. ``ValueObjectStore("s3://bucket/values")``.

    Containers are split into deduplicated children; an object is written
    once, and a concurrent writer of the same key is not an error.
    """

    content_addressed = True
    saves_ahead: ClassVar[bool] = True
    remaining_depth: int = dataclasses.field(default=INLINE_DEPTH, kw_only=True)

    def save_ahead(self, value: Any, key: Digest) -> Digest:
        """Encode ``value`` and its parts now, and send them on a background thread.

        A call's argument is sent while its body runs, beside its result's
        write; :meth:`settle` waits for it before the call is recorded.
        Small entries go to the call database at once instead.
        """
        _, plan = self._plan(value, key)
        sends = [
            out
            for entry, part in plan
            if (kept := self._keep_small(entry, part)) is not KEPT  # else in the call database
            and (out := self._outgoing(kept, part)) is not None
        ]
        if sends:
            client = self._client()
            self._writes.start(
                [key, *(out[0] for out in sends)], lambda: self._send_all(client, sends)
            )
        return key

    def _send_all(self, client: Any, sends: list[Outgoing]) -> None:
        """Write entries in order (parts before what refers to them), noting each as stored."""
        for outgoing in sends:
            self._send(client, outgoing)
            self._remember(outgoing[0])

    def settle(self, keys: Iterable[Digest]) -> None:
        # docstring inherited
        self._writes.settle(keys)
