"""A list, tuple or dict whose parts are all inline is stored as itself; older forms still read."""

from __future__ import annotations

import numpy as np
import pytest

from fleche.call import Call, QueryCall
from fleche.config import from_config
from fleche.digest import digest
from fleche.storage import PickleFileBackend, ValueMemory, ValuePickleFile
from fleche.storage.destructuring import DestructuringMixin, DigestedDict, DigestedIterable

SMALL = [[3, 1.5], (2, "a", None), {"x": 1, "y": b"z"}, []]


@pytest.mark.parametrize("value", SMALL)
def test_a_container_of_scalars_is_stored_as_itself(value):
    values = ValueMemory()
    key = values.save(value)
    assert key == digest(value)  # the key is the container's, as with a form
    stored = values.storage[key]
    assert type(stored) is type(value) and stored == value
    assert values.child_digests(key) == []
    assert values.load(key) == value


def test_the_container_stored_is_not_the_callers():
    values = ValueMemory()
    value = [1, 2]
    key = values.save(value)
    value.append(3)
    assert values.load(key) == [1, 2]


def test_a_file_holds_the_plain_container(tmp_path):
    values = ValuePickleFile(tmp_path)
    key = values.save({"x": [0.5, 2]})
    inner = digest([0.5, 2])
    assert type(PickleFileBackend.get(values, inner)) is list  # as pickled, below the mixin
    assert PickleFileBackend.get(values, key) == DigestedDict({"x": inner})
    assert values.load(key) == {"x": [0.5, 2]}


def test_a_part_stored_apart_keeps_the_form():
    values = ValueMemory()
    array = np.arange(3.0)
    key = values.save([array, 1])
    assert values.storage[key] == DigestedIterable([digest(array), 1])
    assert values.child_digests(key) == [digest(array)]


def test_a_digest_in_a_container_stays_a_reference():
    values = ValueMemory()
    part = values.save([0.5, 0.25])
    for value, form in (
        ({"weights": part, "n": 2}, DigestedDict({"weights": part, "n": 2})),
        ((part, 2), DigestedIterable((part, 2))),
    ):
        key = values.save(value)
        assert values.storage[key] == form
        assert values.child_digests(key) == [part]
    assert values.load(key) == ([0.5, 0.25], 2)


def _old_store(root):
    """A default store holding the results of three calls as an earlier fleche wrote them.

    ``pair`` returned ``[3, 1.5]``, ``load`` an array, and ``report`` was
    given a dict of that array and a count: each container a ``Digested`` form.
    """
    store = from_config({"template": "sql", "root": str(root)})
    array = np.arange(4.0)
    forms = {
        digest([3, 1.5]): DigestedIterable([3, 1.5]),
        digest({"data": array, "n": 4}): DigestedDict({"data": digest(array), "n": 4}),
    }
    store.values._write_plan(list(map(tuple, map(reversed, forms.items()))))  # the old way
    store.save(Call("pair", {}, module="m", result=[3, 1.5]))
    store.save(Call("load", {}, module="m", result=array))
    store.save(Call("report", {"run": {"data": array, "n": 4}}, module="m", result=1))
    below = super(DestructuringMixin, store.values)
    assert {key: below.get(key) for key in forms} == forms  # saving again kept the old entries
    return store, forms, array


def test_old_forms_still_load_verify_collect_and_trace(tmp_path):
    store, forms, array = _old_store(tmp_path)
    pair, assembled = forms
    assert store.values.load(pair) == [3, 1.5]
    loaded = store.values.load_many(list(forms))
    assert loaded[pair] == [3, 1.5] and (loaded[assembled]["data"] == array).all()
    table = store.query().table().set_index("function")
    assert table.loc["m.pair", "result"] == [3, 1.5]
    assert table.loc["m.report", "run"]["n"] == 4
    assert store.verify().ok
    assert store.values.child_digests(assembled) == [digest(array)]
    stray = store.values.save([7, 8])
    assert store.gc(dry_run=True, grace=0) == {stray}  # the array is kept by the old form
    (report,) = store.query(QueryCall(name="report"))
    lineage = store.lineage(report.key())  # through the dict, which no call returned, to its array
    assert {call.name for call in lineage.calls.values()} == {"report", "load"}


@pytest.mark.parametrize("prefix_length", [0, 1])
def test_an_hdf5_store_holds_the_plain_container_and_reads_old_forms(tmp_path, prefix_length):
    pytest.importorskip("h5py")
    from fleche.storage import ValueBagOfHoldingH5File

    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=prefix_length)
    below = super(DestructuringMixin, values)
    key = values.save((3, 1.5))
    assert type(below.get(key)) is tuple and values.load(key) == (3, 1.5)
    array = np.arange(3.0)
    old = digest({"data": array, "n": 3})
    values.save(array)
    values._write_plan([(DigestedDict({"data": digest(array), "n": 3}), old)])  # the old way
    assert below.get(old) == DigestedDict({"data": digest(array), "n": 3})
    loaded = values.load(old)
    assert loaded["n"] == 3 and (loaded["data"] == array).all()
    assert values.child_digests(old) == [digest(array)]
