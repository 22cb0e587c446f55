"""The call model: lookup keys, digested calls, templates, prepared calls."""

from __future__ import annotations

import pickle

import pytest

from fleche import Call, Digest, Exactly, QueryCall
from fleche.call import DigestedCall, function_prefix, lookup_key
from fleche.digest import digest


def make(**changes) -> Call:
    fields = {"name": "f", "module": "m", "arguments": {"x": 1, "y": [1, 2]}, "result": 3.0}
    return Call(**{**fields, **changes})


def test_key_ignores_result_metadata_and_argument_order():
    a = make()
    b = make(result=4.0, metadata={"tags": {"a": 1}}, arguments={"y": [1, 2], "x": 1})
    assert a.key() == b.key()


@pytest.mark.parametrize(
    "change",
    [
        {"name": "g"},
        {"module": "n"},
        {"version": "2"},
        {"code": Digest("a" * 32)},
        {"arguments": {"x": 1.0, "y": [1, 2]}},
        {"arguments": {"x": 1, "y": (1, 2)}},
        {"arguments": {"x": 1}},
        {"arguments": {"z": 1, "y": [1, 2]}},
    ],
)
def test_key_depends_on_identity_and_arguments(change):
    assert make().key() != make(**change).key()


def test_unkeyed_fields_leave_the_key():
    a = make(module="a", unkeyed=frozenset({"module"}))
    b = make(module="b", unkeyed=frozenset({"module"}))
    assert a.key() == b.key()
    with pytest.raises(ValueError, match="only"):
        function_prefix("f", "m", unkeyed=frozenset({"name"}))


def test_digested_call_has_the_same_key():
    call = make()
    record = call.digested()
    assert isinstance(record, DigestedCall)
    assert record.key() == call.key()
    assert record.arguments == {"x": digest(1), "y": digest([1, 2])}
    assert record.result == digest(3.0)
    assert list(record.values()) == [digest(1), digest([1, 2]), digest(3.0)]


def test_lookup_key_matches_call_key():
    call = make()
    assert lookup_key(call.prefix(), call.arguments) == call.key()


def test_query_call_matches_by_digest():
    record = make().digested()
    assert QueryCall().digested().matches(record)
    assert QueryCall(name="f", arguments={"x": 1}).digested().matches(record)
    assert QueryCall(arguments={"x": digest(1)}).digested().matches(record)
    assert not QueryCall(arguments={"x": 2}).digested().matches(record)
    assert not QueryCall(arguments={"w": 2}).digested().matches(record)
    assert QueryCall(result=3.0).digested().matches(record)
    assert not QueryCall(result=Exactly(None)).digested().matches(record)
    assert QueryCall(result=Exactly(None)).digested().matches(make(result=None).digested())
    assert not QueryCall(version=Exactly("1")).digested().matches(record)


def test_query_call_metadata():
    record = make(metadata={"tags": {"project": "x"}}).digested()
    assert QueryCall(metadata={"tags": {}}).matches(record)
    assert QueryCall(metadata={"tags": {"project": "x"}}).matches(record)
    assert not QueryCall(metadata={"tags": {"project": "y"}}).matches(record)
    assert not QueryCall(metadata={"runtime": {}}).matches(record)


def test_indigestible_argument_names_the_argument():
    from fleche import Indigestible

    with pytest.raises(Indigestible) as info:
        make(arguments={"cfg": {"solver": [1, 2, iter(())]}}).key()
    assert info.value.path == "arguments['cfg']['solver'][2]"


#: A DigestedCall pickled by the version before the 0.22 field order (protocol 5).
OLD_PICKLE = bytes.fromhex(
    "800595c6000000000000008c0b666c656368652e63616c6c948c0c446967657374656443616c6c94"
    "93942981945d94288c0166948c016d947d948c0178948c0d666c656368652e646967657374948c06"
    "4469676573749493948c206162616261626162616261626162616261626162616261626162616261"
    "626162948594819473680b8c20636463646364636463646364636463646364636463646364636463"
    "646364636494859481947d948c0474616773947d948c0161944b0173738c0132944e289194474014"
    "00000000000065622e"
)


def test_records_pickled_before_the_0_22_field_order_still_load():
    record = pickle.loads(OLD_PICKLE)
    assert type(record) is DigestedCall
    assert (record.name, record.module, record.version, record.created) == ("f", "m", "2", 5.0)
    assert record.arguments == {"x": "ab" * 16} and record.result == "cd" * 16
    assert record.metadata == {"tags": {"a": 1}} and record.unkeyed == frozenset()
    assert pickle.dumps(record, protocol=5) == OLD_PICKLE  # the format is unchanged


def test_calls_are_equal_by_content_not_by_kind_or_creation_time():
    call = Call(name="f", module="m", arguments={"x": digest(1)}, result=digest(2), created=1.0)
    record = DigestedCall(name="f", module="m", arguments={"x": digest(1)}, result=digest(2))
    assert call == record and record.created != 1.0
    assert call != call.replace(version="2")
    assert Call(name="f", module="m", arguments={"x": 1}, result=2).digested() == record
