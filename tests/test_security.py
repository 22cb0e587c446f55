"""Signing: keys, rotation, and refusing unsigned or tampered entries before unpickling."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from fleche.digest import digest
from fleche.errors import ConfigError, CorruptEntryWarning, SignatureError
from fleche.security import ENVIRONMENT_VARIABLE, Signed, Signer, secret_keys
from fleche.serializers import PickleSerializer
from fleche.storage import CallPickleFile, PickleFileBackend, ValuePickleFile

KEY = digest("the entry")


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)


def _refused(storage: PickleFileBackend, key: str = KEY) -> None:
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
        storage.get(key)


# -- keys and the signer -------------------------------------------------------


def test_secret_keys_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert secret_keys() == ()
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "new, old")
    assert secret_keys() == (b"new", b"old")
    assert secret_keys("explicit") == (b"explicit",)
    assert secret_keys([b"a", "b"]) == (b"a", b"b")
    assert secret_keys(()) == ()  # explicitly unsigned, whatever the environment says
    with pytest.raises(ConfigError):
        secret_keys(["good", ""])


def test_sign_and_verify_with_rotation() -> None:
    old = Signer((b"old",))
    tag = old.sign(b"context", b"data")
    assert len(tag) == 32 and old.verify(tag, b"context", b"data")
    assert Signer((b"new", b"old")).verify(tag, b"context", b"data")  # old key still listed
    assert not Signer((b"new",)).verify(tag, b"context", b"data")  # old key retired
    assert not old.verify(tag, b"context", b"date")
    assert not old.verify(tag, b"other", b"data")
    assert Signer((b"new", b"old")).sign(b"x") == Signer((b"new",)).sign(
        b"x"
    )  # the first key signs


def test_signer_pickles_and_hides_keys() -> None:
    signer = Signer((b"secret",))
    assert "secret" not in repr(signer)
    assert pickle.loads(pickle.dumps(signer)).verify(signer.sign(b"x"), b"x")


class _Recording:
    name = "recording"

    def __init__(self) -> None:
        self.loaded = 0

    def dumps(self, obj: object) -> bytes:
        return pickle.dumps(obj)

    def loads(self, data: bytes) -> object:
        self.loaded += 1
        return pickle.loads(data)


def test_signed_serializer_refuses_before_deserializing() -> None:
    inner = _Recording()
    signed = Signed(inner, keys="k")
    data = signed.dumps({"a": 1})
    assert signed.name == "hmac+recording"
    assert signed.loads(data) == {"a": 1} and inner.loaded == 1
    tampered = bytearray(data)
    tampered[-2] ^= 0xFF
    for bad in (bytes(tampered), data[:-1], data[32:], b""):
        with pytest.raises(SignatureError):
            signed.loads(bad)
    assert inner.loaded == 1
    assert Signed(inner, keys=["new", "k"]).loads(data) == {"a": 1}
    with pytest.raises(SignatureError):
        Signed(inner, keys="other").loads(data)


def test_signed_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=ENVIRONMENT_VARIABLE):
        Signed(PickleSerializer())
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "from-env")
    assert (
        Signed(PickleSerializer()).loads(Signed(PickleSerializer(), keys="from-env").dumps(3)) == 3
    )


# -- signed stores -------------------------------------------------------------


def test_signed_store_round_trip_and_rotation(tmp_path: Path) -> None:
    PickleFileBackend(root=tmp_path, secret_key="old").put("signed long ago", KEY)
    rotated = PickleFileBackend(root=tmp_path, secret_key=["new", "old"])
    assert rotated.get(KEY) == "signed long ago"
    rotated.put("signed now", digest(2))
    assert PickleFileBackend(root=tmp_path, secret_key="new").get(digest(2)) == "signed now"
    _refused(PickleFileBackend(root=tmp_path, secret_key="new"))  # "old" retired


def test_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "team-key")
    ValuePickleFile(root=tmp_path).save("x", KEY)
    assert PickleFileBackend(root=tmp_path, secret_key="team-key").get(KEY) == "x"
    _refused(PickleFileBackend(root=tmp_path, secret_key=()))  # no key to verify a signed entry


def test_unsigned_entry_refused_under_a_key(tmp_path: Path) -> None:
    PickleFileBackend(root=tmp_path).put("unsigned", KEY)
    _refused(PickleFileBackend(root=tmp_path, secret_key="k"))


def test_tampered_entry_refused(tmp_path: Path) -> None:
    storage = PickleFileBackend(root=tmp_path, secret_key="k")
    storage.put("the honest value", KEY)
    path = storage._path(KEY)
    data = path.read_bytes()
    for offset in (5, 8, 20, len(data) - 4):  # flags, tag and payload bytes
        tampered = bytearray(data)
        tampered[offset] ^= 0x01
        path.write_bytes(bytes(tampered))
        _refused(storage)
    path.write_bytes(data[:-1])  # truncated
    _refused(storage)
    path.write_bytes(data)
    assert storage.get(KEY) == "the honest value"


def test_signed_entry_copied_to_another_key_refused(tmp_path: Path) -> None:
    storage = PickleFileBackend(root=tmp_path, secret_key="k")
    storage.put("value of one", digest(1))
    storage.put("value of two", KEY)
    os.replace(storage._path(digest(1)), storage._path(KEY))
    _refused(storage)


_EXPLOITED: list[str] = []


def _exploit() -> str:
    _EXPLOITED.append("ran")
    return "pwned"


class _Malicious:
    def __reduce__(self) -> tuple:
        return (_exploit, ())


def test_foreign_pickle_is_never_unpickled_under_a_key(tmp_path: Path) -> None:
    PickleFileBackend(root=tmp_path).put(_Malicious(), KEY)  # a valid unsigned entry
    assert _EXPLOITED == []
    _refused(PickleFileBackend(root=tmp_path, secret_key="k"))
    storage = PickleFileBackend(root=tmp_path, secret_key="k")
    storage._path(KEY).write_bytes(pickle.dumps(_Malicious()))  # a bare pickle
    _refused(storage)
    assert _EXPLOITED == []


def test_secret_key_not_in_repr_and_survives_pickling(tmp_path: Path) -> None:
    calls = CallPickleFile(root=tmp_path, secret_key="hunter2")
    assert "hunter2" not in repr(calls)
    clone = pickle.loads(pickle.dumps(calls))
    calls.put("signed", KEY)
    assert clone.get(KEY) == "signed"
