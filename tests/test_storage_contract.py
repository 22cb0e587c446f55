"""The storage spec's names: construction by position, the lock members, Intent and OperationContext."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from fleche.digest import digest
from fleche.storage import (
    CallPickleFile,
    FileStorage,
    Intent,
    OperationContext,
    PickleFileBackend,
    ValueMemory,
    ValuePickleFile,
)


def test_storages_take_their_fields_by_position(tmp_path):
    assert ValueMemory({}).storage == {}
    values = ValuePickleFile(str(tmp_path / "values"))
    assert values.root == tmp_path / "values" and values.remaining_depth == 1
    calls = CallPickleFile(tmp_path / "calls", 2.0, 0.01)
    assert (calls.lock_timeout, calls.lock_wait_start) == (2.0, 0.01)
    assert [f.name for f in dataclasses.fields(FileStorage)][:3] == [
        "root",
        "lock_timeout",
        "lock_wait_start",
    ]
    with pytest.raises(TypeError):
        PickleFileBackend(tmp_path, 1.0, 0.001, "dill")  # only the FileStorage fields by position
    assert ValuePickleFile(root=tmp_path, remaining_depth=0).remaining_depth == 0


def test_per_key_lock_members(tmp_path):
    values = ValuePickleFile(tmp_path)
    assert type(values._meta_lock) is type(threading.Lock())
    lock = values._get_key_lock("k")
    assert values._get_key_lock("k") is lock and values._key_locks["k"] is lock
    key = values.save("x")
    with values._operation_context(key):
        assert key in values._key_locks
    assert key not in values._key_locks  # dropped once nobody holds it


def test_intent_and_operation_context_names():
    assert {i.name for i in Intent} == {"WRITE", "READ"}
    assert isinstance(ValueMemory()._operation_context(digest(1)), OperationContext)
