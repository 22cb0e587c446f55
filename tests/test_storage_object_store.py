"""Values in S3-compatible object storage: what only they do, against a real SeaweedFS server.

The shared behaviour is in the conformance suite (backend ``s3`` in
tests/backends.py).  Every test skips with a reason unless
``FLECHE_TEST_S3_URL`` names a server (``eval "$(.ci/start-seaweedfs)"``).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import sys
import threading
import time
import tracemalloc
import warnings

import pytest

from fleche import cache, fleche
from fleche.config import from_config, to_config
from fleche.digest import digest
from fleche.errors import (
    AmbiguousDigestError,
    CacheWarning,
    ConfigError,
    CorruptEntryWarning,
    SaveError,
)
from fleche.storage.registry import get_storage_constructor

from .backends import raw_object_store, s3_url, s3_values

obstore = pytest.importorskip("obstore", reason="the s3 extra (obstore) is not installed")
object_store = pytest.importorskip("fleche.storage.object_store")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def url(tmp_path):
    return s3_url(tmp_path / "store")  # skips without a server


@pytest.fixture
def endpoint(url):
    return os.environ["FLECHE_TEST_S3_ENDPOINT"]


def _object(key: str) -> str:
    return f"{key[:3]}/{key[3:]}"


# -- written once --------------------------------------------------------------------


def _save_in_process(root, value):
    return str(s3_values(root).save(value))


def test_a_second_write_of_a_key_leaves_the_object_alone(tmp_path, url):
    values = s3_values(tmp_path / "store")
    key = values.save("once")
    raw = raw_object_store(url)
    before = obstore.head(raw, _object(key))
    again = s3_values(tmp_path / "store")  # another writer: knows nothing of the first
    assert again.save("once") == key
    assert obstore.head(raw, _object(key))["e_tag"] == before["e_tag"]
    assert again.load(key) == "once"


def test_a_value_found_stored_is_not_sent_again_for_a_while(tmp_path, url, monkeypatch):
    monkeypatch.setattr(object_store, "PRESENT_SECONDS", 4.0)
    values = s3_values(tmp_path / "store")
    key = values.save("repeated argument")
    noted = time.monotonic()
    raw = raw_object_store(url)
    time.sleep(2.5)
    obstore.delete(raw, _object(key))  # behind its back: it still trusts its note
    values.save("repeated argument")
    assert not values.contains(key)
    # The note dates from the first save, not from the saves it spared.
    time.sleep(max(0.0, noted + 4.5 - time.monotonic()))
    values.save("repeated argument")
    assert values.load(key) == "repeated argument"
    values.evict(key)  # its own eviction is noted at once
    values.save("repeated argument")
    assert values.load(key) == "repeated argument"


def test_a_large_value_stored_already_is_not_uploaded_again(tmp_path, url):
    big = os.urandom(object_store.LARGE + 1)
    key = s3_values(tmp_path / "store").save(big)
    raw = raw_object_store(url)
    before = obstore.head(raw, _object(key))
    assert s3_values(tmp_path / "store").save(big) == key
    assert obstore.head(raw, _object(key))["e_tag"] == before["e_tag"]
    obstore.delete(raw, _object(key))
    assert s3_values(tmp_path / "store").load(s3_values(tmp_path / "store").save(big)) == big


def test_racing_writers_of_one_key_all_succeed(tmp_path, url):
    value = list(range(1000))
    threads = 8
    barrier = threading.Barrier(threads)
    stores = [s3_values(tmp_path / "store") for _ in range(threads)]

    def save(store):
        barrier.wait()
        return store.save(value)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        keys = set(pool.map(save, stores))
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as pool:
        keys |= set(pool.map(_save_in_process, [tmp_path / "store"] * 2, [value] * 2))
    assert len(keys) == 1
    assert stores[0].load(keys.pop()) == value
    assert len(list(stores[0].list())) == 1


def _load_in_a_forked_child(values, key, results) -> None:
    try:
        results.put(("loaded", values.load(key)))
    except Exception as err:  # noqa: BLE001 - the type is the answer
        results.put((type(err).__name__, str(err)))


def test_a_child_forked_after_use_fails_at_once_instead_of_hanging(tmp_path, url):
    values = s3_values(tmp_path / "store")
    key = values.save("before the fork")
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    child = fork.Process(target=_load_in_a_forked_child, args=(values, key, results))
    child.start()
    kind, message = results.get(timeout=30)
    child.join(timeout=30)
    assert kind == "ForkedClientError" and "spawn" in message
    assert values.load(key) == "before the fork"  # the parent's client is untouched


# -- prefixes across the fan-out -------------------------------------------------------


def test_prefixes_expand_across_the_fan_out(tmp_path, url):
    values = s3_values(tmp_path / "store")
    keys = sorted(str(values.save(f"value {i}")) for i in range(300))
    raw = raw_object_store(url)
    obstore.put(raw, "README", b"not an entry")  # foreign objects are not keys
    obstore.put(raw, f"{keys[0][:3]}/notakey", b"nor this")
    assert [str(k) for k in values.list()] == keys
    for key in keys[::37]:
        assert values.expand(key[:12]) == key
        short = values.shrink(key)
        assert key.startswith(short) and values.expand(short) == key
        for length in (1, 2, 3, 4):
            prefix = key[:length]
            expected = [k for k in keys if k.startswith(prefix)]
            if len(expected) == 1:
                assert values.expand(prefix) == key
                continue
            with pytest.raises(AmbiguousDigestError) as raised:
                values.expand(prefix)
            assert raised.value.candidates == expected[: len(raised.value.candidates)]
    with pytest.raises(KeyError):
        values.expand(next(f"{c}{keys[0][1:8]}" for c in "0123456789abcdef" if c != keys[0][0]))


# -- damaged and forged objects --------------------------------------------------------


def test_a_tampered_object_reads_as_a_miss_and_is_rewritten(tmp_path, url):
    values = s3_values(tmp_path / "store", secret_key="object-key")
    key = values.save({"x": 1})
    raw = raw_object_store(url)
    data = bytes(obstore.get(raw, _object(key)).bytes())
    forged = data[:-1] + bytes([data[-1] ^ 1])
    obstore.put(raw, _object(key), forged)
    with pytest.warns(CorruptEntryWarning, match="signature does not match"):
        with pytest.raises(KeyError):
            values.load(key)
    assert values.contains(key)  # still there: the next save rewrites it
    values.save({"x": 1})
    assert values.load(key) == {"x": 1}
    obstore.put(raw, _object(key), b"garbage")
    with pytest.warns(CorruptEntryWarning, match="not a fleche pickle file"):
        with pytest.raises(KeyError):
            s3_values(tmp_path / "store", secret_key="object-key").load(key)


def test_signed_objects_need_the_key(tmp_path, url):
    key = s3_values(tmp_path / "store", secret_key="object-key").save("signed")
    for reader in (
        s3_values(tmp_path / "store", secret_key=()),
        s3_values(tmp_path / "store", secret_key="another-key"),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(KeyError):
                reader.load(key)
        assert any(issubclass(w.category, CorruptEntryWarning) for w in caught)


def test_compressed_large_values_round_trip(tmp_path, url):
    numpy = pytest.importorskip("numpy")
    values = s3_values(tmp_path / "store", compression="zlib")
    array = numpy.arange(200_000, dtype="float64")
    loaded = values.load(values.save(array))
    assert (loaded == array).all()
    loaded[0] = 1.0  # writable, as from a pickle file


# -- configuration and credentials -----------------------------------------------------


def test_credentials_are_never_written_down(tmp_path, url, endpoint):
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not secret:
        pytest.skip("the test server's credentials are not in AWS_SECRET_ACCESS_KEY")
    store = from_config({"template": "s3", "url": url, "endpoint": endpoint})
    table = to_config(store)
    assert table == {"template": "s3", "url": url, "endpoint": endpoint}
    assert to_config(from_config(table)) == table
    for text in (repr(table), repr(store), repr(store.values), pickle.dumps(store.values)):
        assert secret not in str(text) and os.environ["AWS_ACCESS_KEY_ID"] not in str(text)
    with pytest.raises(ConfigError, match="secret keys are never written"):
        s3_values(tmp_path / "store", secret_key="k").to_config()


def test_credentials_from_a_profile(tmp_path, url, endpoint, monkeypatch):
    pytest.importorskip("boto3")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        "[tests]\n"
        f"aws_access_key_id = {os.environ['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {os.environ['AWS_SECRET_ACCESS_KEY']}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    table = {"template": "s3", "url": url, "endpoint": endpoint, "profile": "tests"}
    store = from_config(table)
    assert store.values.load(store.values.save("through a profile")) == "through a profile"
    assert to_config(store) == table
    with pytest.raises(ConfigError, match="no AWS profile 'nobody'"):
        from_config({**table, "profile": "nobody"})


def test_fleche_config_shows_the_store_without_secrets(
    tmp_path, url, endpoint, monkeypatch, capsys
):
    from fleche.cli import main

    (tmp_path / "fleche.toml").write_text(
        f'root = true\n[bucket]\ntemplate = "s3"\nurl = "{url}"\n'
        f'endpoint = "{endpoint}"\ncalls = "calls.db"\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLECHE_CACHE")
    assert main(["--cache", "bucket", "config"]) == 0
    out = capsys.readouterr().out
    assert "'template': 's3'" in out and url in out and endpoint in out
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in out
    assert os.environ["AWS_ACCESS_KEY_ID"] not in out


def test_the_template_needs_a_url():
    with pytest.raises(ConfigError, match="needs a 'url'"):
        from_config({"template": "s3"})
    with pytest.raises(ConfigError, match="s3://bucket/prefix"):
        from_config({"template": "s3", "url": "http://bucket/prefix"})


def test_a_missing_obstore_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "obstore", None)
    monkeypatch.delitem(sys.modules, "fleche.storage.object_store", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'fleche\[s3\]'"):
        get_storage_constructor("ValueObjectStore", "value")


# -- the template end to end -----------------------------------------------------------


COMPUTED: list[int] = []


@fleche
def _double(x):
    COMPUTED.append(x)
    return {"twice": 2 * x, "payload": list(range(x))}


def test_the_s3_template_caches_decorated_calls(tmp_path, url, endpoint):
    table = {"template": "s3", "url": url, "endpoint": endpoint, "calls": str(tmp_path / "c.db")}
    COMPUTED.clear()
    with cache(from_config(table)):
        result = _double(5)
        assert _double(5) == result
    reopened = from_config(table)  # as another process opens it
    with cache(reopened):
        assert _double(5) == result
    assert COMPUTED == [5]
    assert list(reopened.values.list())  # the values are in the bucket


# -- arguments saved ahead -----------------------------------------------------------


def test_a_value_saved_ahead_is_readable_at_once_and_settles(tmp_path, url):
    values = s3_values(tmp_path / "store")
    # A container (parts and the whole) with a part large enough that its
    # write is still running when the load asks for it.
    value = {"table": list(range(300)), "blob": os.urandom(8 << 20)}
    key = digest(value)
    assert values.save_ahead(value, key) == key
    assert values.load(key) == value  # waits for the write this process started
    values.settle([key])
    assert values.contains(key)
    assert s3_values(tmp_path / "store").load(key) == value  # as another process reads it


def test_a_failed_write_ahead_is_reported_by_settle_and_not_read(tmp_path, url, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    values = s3_values(tmp_path / "store")
    key = digest("refused")
    assert values.save_ahead("refused", key) == key  # no request waited for here
    with pytest.raises(SaveError, match=key[:12]):
        values.settle([key])
    values.settle([key])  # reported once
    monkeypatch.undo()
    assert not s3_values(tmp_path / "store").contains(key)


def _mutating(numbers):
    numbers.append("changed by the body")
    return len(numbers)


def test_an_argument_is_stored_as_it_was_when_the_call_began(tmp_path, url, endpoint):
    table = {"template": "s3", "url": url, "endpoint": endpoint}
    store = from_config(table)
    numbers = list(range(50))
    key = digest(numbers)
    with cache(store):
        assert fleche(_mutating)(numbers) == 51
    assert store.values.load(key) == list(range(50))


RUNS: list[int] = []


def _counted(x):
    RUNS.append(x)
    return x + 1


def test_a_call_whose_argument_was_not_stored_is_not_recorded(tmp_path, url, monkeypatch):
    # One request refused (as a network failure would): the argument's, sent
    # in the background while the result's write succeeds (every value an
    # object: inline_limit = 0, else a small argument is kept in the call database).
    endpoint = os.environ["FLECHE_TEST_S3_ENDPOINT"]
    store = from_config({"template": "s3", "url": url, "endpoint": endpoint, "inline_limit": 0})
    lost = _object(digest(41))
    sent = obstore.put

    def put(client, path, *args, **kwargs):
        if path == lost:
            raise ConnectionError("connection reset")
        return sent(client, path, *args, **kwargs)

    monkeypatch.setattr(obstore, "put", put)
    counted = fleche(_counted)
    RUNS.clear()
    with cache(store):
        with pytest.warns(CacheWarning, match="connection reset"):
            assert counted(41) == 42  # the result still returned
        monkeypatch.undo()
        assert counted(41) == 42  # not recorded: computed again, stored now
        assert counted(41) == 42
    assert RUNS == [41, 41]
    assert store.values.load(digest(41)) == 41


# -- one copy on a hit ---------------------------------------------------------------


def _large_values():
    yield os.urandom(4 << 20)
    numpy = sys.modules.get("numpy") or pytest.importorskip("numpy")
    yield numpy.arange(1 << 19, dtype=numpy.float64)


@pytest.mark.parametrize("kind", [0, 1], ids=["bytes", "array"])
def test_a_large_hit_copies_the_value_once(tmp_path, url, kind):
    # The object's bytes arrive in obstore's buffer; the checksum reads them
    # there, and the one allocation Python makes is the value handed back.
    value = list(_large_values())[kind]
    values = s3_values(tmp_path / "store")
    key = values.save(value)
    size = memoryview(value).nbytes
    tracemalloc.start()
    try:
        loaded = values.load(key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert memoryview(loaded).tobytes() == memoryview(value).tobytes()
    assert size <= peak < 1.2 * size
    if kind:
        assert loaded.flags.writeable
