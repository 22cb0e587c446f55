"""fleche.digest: canonical, exact, type-tagged digests of values.

The golden vectors in ``golden_digests.json`` pin the scheme: if one changes,
either the scheme changed by accident (a bug) or on purpose (bump
``SCHEME_VERSION`` and regenerate with ``python tests/test_digest.py --regenerate``).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import io
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import threading
from collections import Counter, OrderedDict, defaultdict, namedtuple
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path, PurePosixPath, PureWindowsPath
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fleche import _digest_numpy, fleche
from fleche._digest_scheme import ONE_SHOT_MAX, Tag, header, leaf, stream
from fleche.digest import (
    DIGEST_LENGTH,
    SCHEME_VERSION,
    Digest,
    Indigestible,
    add_hook,
    digest,
    digest_raw,
    remove_hook,
)
from fleche.storage import ValueMemory

GOLDEN_PATH = Path(__file__).with_name("golden_digests.json")
FUNCTION_GOLDEN_PYTHON = (3, 11)  # bytecode, hence function digests, depend on the version


# Golden classes name a fixed module, so the vectors do not depend on how pytest imports us.
@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


class Color(enum.Enum):
    RED = 1
    GREEN = 2


Point.__module__ = Color.__module__ = "fleche_golden"


def golden_function(x, scale=2.0):
    """A function whose code is pinned by a golden vector."""
    return [x * scale, math.pi]


def _golden_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"x": np.arange(4, dtype=np.int64), "y": np.linspace(0.0, 1.0, 4), "s": list("abcd")},
        index=pd.Index([10, 20, 30, 40], name="k"),
    )


GOLDEN_VALUES = {
    "int_zero": lambda: 0,
    "int_small": lambda: 42,
    "int_negative": lambda: -7,
    "int_int64_max": lambda: 2**63 - 1,
    "int_big": lambda: 2**200 + 12345,
    "int_big_negative": lambda: -(3**150),
    "bool_true": lambda: True,
    "bool_false": lambda: False,
    "none": lambda: None,
    "float": lambda: 1.5,
    "float_negative_zero": lambda: -0.0,
    "float_nan": lambda: float("nan"),
    "float_inf": lambda: float("-inf"),
    "float_subnormal": lambda: 5e-324,
    "complex": lambda: complex(1.5, -2.0),
    "decimal": lambda: Decimal("3.14159"),
    "decimal_nan": lambda: Decimal("NaN"),
    "fraction": lambda: Fraction(22, 7),
    "str": lambda: "fléche ✓",
    "str_empty": lambda: "",
    "bytes": lambda: b"\x00\x01fleche",
    "bytearray": lambda: bytearray(b"abc"),
    "list": lambda: [1, "two", 3.0],
    "tuple": lambda: (1, "two", 3.0),
    "nested_dict": lambda: {"cfg": {"solver": [1, 2, {"tol": 1e-6}], "n": None}},
    "set": lambda: {1, 2, 3},
    "frozenset": lambda: frozenset({"a", "b"}),
    "dataclass": lambda: Point(1, 2.5),
    "ordered_dict": lambda: OrderedDict([("b", 1), ("a", 2)]),
    "default_dict": lambda: defaultdict(list, {"a": [1]}),
    "instance": lambda: Celsius(21.5),
    "enum": lambda: Color.RED,
    "path": lambda: PurePosixPath("/data/run1.h5"),
    "uuid": lambda: UUID("12345678-1234-5678-1234-567812345678"),
    "datetime_naive": lambda: datetime(2024, 5, 17, 12, 30, 0, 123456),
    "datetime_aware": lambda: datetime(2024, 5, 17, 12, 30, tzinfo=timezone(timedelta(hours=2))),
    "date": lambda: date(2024, 5, 17),
    "timedelta": lambda: timedelta(days=1, seconds=3, microseconds=4),
    "slice": lambda: slice(1, 10, 2),
    "range": lambda: range(0, 100, 5),
    "type": lambda: int,
    "digest": lambda: Digest("0123456789abcdef0123456789abcdef"),
    "ndarray_float64": lambda: np.arange(12, dtype=np.float64).reshape(3, 4),
    "ndarray_int32": lambda: np.arange(10, dtype=np.int32),
    "ndarray_bool": lambda: np.array([True, False, True]),
    "ndarray_unicode": lambda: np.array(["a", "bc"]),
    "ndarray_datetime64": lambda: np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]"),
    "ndarray_structured": lambda: np.array(
        [(1, 2.0), (3, 4.0)], dtype=[("a", "<i4"), ("b", "<f8")]
    ),
    "ndarray_object": lambda: np.array([1, "x", None], dtype=object),
    "numpy_float64": lambda: np.float64(1.0),
    "numpy_int64": lambda: np.int64(1),
    "dataframe": _golden_frame,
    "series": lambda: pd.Series([1.0, 2.0], index=["a", "b"], name="v"),
    "index": lambda: pd.Index([3, 1, 2], name="k"),
    "range_index": lambda: pd.RangeIndex(5),
    "multi_index": lambda: pd.MultiIndex.from_tuples([(1, "a"), (2, "b")], names=["n", "c"]),
    "categorical": lambda: pd.Categorical(["b", "a", "b"], categories=["a", "b"]),
    "function": lambda: golden_function,
}


def _version_bound(name: str) -> bool:
    return name == "function" and sys.version_info[:2] != FUNCTION_GOLDEN_PYTHON


def _regenerate() -> None:
    table = {name: digest(make()) for name, make in GOLDEN_VALUES.items()}
    GOLDEN_PATH.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------------- golden vectors


def test_golden_table_matches_json():
    assert set(json.loads(GOLDEN_PATH.read_text())) == set(GOLDEN_VALUES)


@pytest.mark.parametrize("name", sorted(GOLDEN_VALUES))
def test_golden_vector(name):
    if _version_bound(name):
        pytest.skip(f"function digests are pinned for Python {FUNCTION_GOLDEN_PYTHON}")
    expected = json.loads(GOLDEN_PATH.read_text())[name]
    assert digest(GOLDEN_VALUES[name]()) == expected, (
        f"the digest of {name!r} changed: the encoding scheme changed. If on purpose, bump "
        "SCHEME_VERSION and regenerate with `python tests/test_digest.py --regenerate`"
    )


def test_golden_vectors_are_distinct():
    table = json.loads(GOLDEN_PATH.read_text())
    assert len(set(table.values())) == len(table)


# ---------------------------------------------------------------------- Digest


def test_digest_is_lowercase_hex_of_full_length():
    d = digest(5)
    assert isinstance(d, Digest) and isinstance(d, str)
    assert len(d) == DIGEST_LENGTH and d.is_full
    assert set(d) <= set("0123456789abcdef")
    assert d == Digest.from_raw(digest_raw(5)) and d.raw == digest_raw(5)


def test_short_digest_validation():
    assert Digest("A3F9C1") == "a3f9c1"
    assert not Digest("a3f9c1").is_full
    assert repr(Digest("a3f9c1")) == "Digest('a3f9c1')"
    for bad in ("", "xyz", "a3f9 c1", "0" * 33, "ä"):
        with pytest.raises(ValueError, match="not a digest"):
            Digest(bad)
    with pytest.raises(TypeError):
        Digest(b"\x00" * 16)
    with pytest.raises(ValueError, match="expand"):
        _ = Digest("abc").raw
    with pytest.raises(ValueError):
        Digest.from_raw(b"\x00" * 15)


def test_digest_survives_pickle():
    import pickle

    d = digest("x")
    again = pickle.loads(pickle.dumps(d))
    assert type(again) is Digest and again == d


def test_merkle_property():
    for value in (5, "text", [1, {"a": (2, 3)}], np.arange(3)):
        d = digest(value)
        assert digest(Digest(d)) == d
        # a digest can stand for its value inside a container
        assert digest([Digest(d), 1]) == digest([value, 1])
        assert digest({"k": Digest(d)}) == digest({"k": value})


def test_short_digest_must_be_expanded():
    with pytest.raises(ValueError, match="must be expanded"):
        digest(Digest("a3f9c1"))


# ---------------------------------------------------------------------- exactness


def test_regression_pairs_are_distinct():
    pairs = [
        (-1.0, -2.0),
        (0.5, 2**60),
        (1, 1.0),
        (1, True),
        (1.0, True),
        (0, False),
        (Decimal("1"), 1),
        (Fraction(1, 2), 0.5),
        (Decimal("1.0"), Decimal("1.00")),
        ([1], (1,)),
        ({1}, frozenset({1})),
        ([], {}),
        ([("a", 1)], {"a": 1}),
        (b"abc", bytearray(b"abc")),
        (b"abc", "abc"),
        ("1", 1),
        (None, 0),
        (0.0, -0.0),
        (np.float64(1), 1.0),
        (np.float64(1), np.float32(1)),
        (np.int64(1), 1),
        (np.bool_(True), True),
        (2**64, -(2**64)),
        (2**63, 2**63 - 1),
        (complex(1, 0), 1.0),
        ([[1, 2], 3], [1, [2, 3]]),
        (("a", "b"), ("ab",)),
        (Path("a"), "a"),
        (datetime(2024, 1, 1), date(2024, 1, 1)),
        (range(3), [0, 1, 2]),
        (slice(3), slice(0, 3)),
    ]
    for a, b in pairs:
        assert digest(a) != digest(b), (a, b)


def test_nans_are_canonical():
    nans = [
        float("nan"),
        -float("nan"),
        struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0],
        float("inf") - float("inf"),
    ]
    assert len({digest(x) for x in nans}) == 1
    assert digest(complex(float("nan"), 1)) == digest(complex(-float("nan"), 1))
    assert digest(np.float64("nan")) == digest(-np.float64("nan"))
    assert digest(np.float64("nan")) != digest(float("nan"))  # tagged by dtype
    assert digest(Decimal("NaN")) == digest(Decimal("-NaN"))


def test_big_ints_are_exact():
    values = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**100, -(10**100), 2**100 + 1]
    assert len({digest(v) for v in values}) == len(values)


def _strict_key(x):
    """Equality that digests must follow: exact types, float bits, one NaN."""
    kind = type(x)
    if kind is float:
        return ("float", "nan" if x != x else struct.pack("<d", x))
    if kind is complex:
        return ("complex", _strict_key(x.real), _strict_key(x.imag))
    if kind in (list, tuple):
        return (kind.__name__, tuple(_strict_key(e) for e in x))
    if kind is dict:
        return ("dict", frozenset((_strict_key(k), _strict_key(v)) for k, v in x.items()))
    if kind is OrderedDict:  # equality of two OrderedDicts is order-sensitive
        return ("OrderedDict", tuple((_strict_key(k), _strict_key(v)) for k, v in x.items()))
    if kind is defaultdict:  # the factory decides what a missing key reads as
        return ("defaultdict", x.default_factory, _strict_key(dict(x)))
    if kind in (set, frozenset):
        return (kind.__name__, frozenset(_strict_key(e) for e in x))
    return (kind.__name__, x)


def _rebuilt(x):
    """An equal copy built in another order (dicts and sets reversed)."""
    kind = type(x)
    if kind in (list, tuple):
        return kind(_rebuilt(e) for e in x)
    if kind is dict:
        return {k: _rebuilt(v) for k, v in reversed(list(x.items()))}
    if kind in (set, frozenset):
        return kind(reversed(list(x)))
    return x


_keys = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5), st.binary(max_size=5)
)
_scalars = _keys | st.complex_numbers()
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(_keys, inner, max_size=4)
        | st.lists(st.tuples(_keys, inner), max_size=4).map(OrderedDict)
        | st.tuples(st.sampled_from([None, list, int]), st.dictionaries(_keys, inner, max_size=3)).map(
            lambda factory_items: defaultdict(*factory_items)
        )
        | st.sets(_keys, max_size=4)
        | st.frozensets(_keys, max_size=4)
    ),
    max_leaves=12,
)


@given(st.integers(), st.integers())
def test_distinct_ints_have_distinct_digests(a, b):
    assume(a != b)
    assert digest(a) != digest(b)


@given(st.floats(), st.floats())
def test_distinct_float_bits_have_distinct_digests(a, b):
    assume(_strict_key(a) != _strict_key(b))
    assert digest(a) != digest(b)


@given(st.complex_numbers(), st.complex_numbers())
def test_distinct_complex_have_distinct_digests(a, b):
    assume(_strict_key(a) != _strict_key(b))
    assert digest(a) != digest(b)


@given(st.text(), st.text())
def test_distinct_str_have_distinct_digests(a, b):
    assume(a != b)
    assert digest(a) != digest(b)


@given(st.binary(), st.binary())
def test_distinct_bytes_have_distinct_digests(a, b):
    assume(a != b)
    assert digest(a) != digest(b)


@settings(max_examples=300)
@given(_values, _values)
def test_digest_equality_is_strict_equality(a, b):
    assert (digest(a) == digest(b)) == (_strict_key(a) == _strict_key(b))


@given(_values)
def test_digest_ignores_dict_and_set_order(value):
    assert digest(_rebuilt(value)) == digest(value)


def test_dict_order_insensitive_but_values_count():
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest({"a": 1, "b": 2}) != digest({"a": 2, "b": 1})
    assert digest(OrderedDict(a=1)) != digest({"a": 1})  # subclasses are tagged


def test_ordered_dict_order_and_default_dict_factory_count():
    # Regression: both were left out, so a hit could return an unequal stored value.
    assert OrderedDict(a=1, b=2) != OrderedDict(b=2, a=1)
    assert digest(OrderedDict(a=1, b=2)) != digest(OrderedDict(b=2, a=1))
    assert digest(defaultdict(list, a=1)) != digest(defaultdict(int, a=1))
    assert digest(defaultdict(list, a=1, b=2)) == digest(defaultdict(list, b=2, a=1))

    class Recent(OrderedDict):
        pass

    assert digest(Recent(a=1, b=2)) != digest(Recent(b=2, a=1))
    assert digest(Recent(a=1)) != digest(OrderedDict(a=1))
    assert digest(Counter("aab")) == digest(Counter("baa")) != digest({"a": 2, "b": 1})


def test_a_hit_returns_a_value_equal_to_what_the_function_computed(memory):
    @fleche
    def ordered(first):
        items = [("a", 1), ("z", 2)]
        return OrderedDict(items if first == "a" else items[::-1])

    @fleche
    def counting(factory):
        return defaultdict({"list": list, "int": int}[factory], x=1)

    for _ in range(2):  # computed, then hits: each call gets its own value back
        assert list(ordered("a")) == ["a", "z"] and list(ordered("z")) == ["z", "a"]
        assert counting("list").default_factory is list
        assert counting("int").default_factory is int


@settings(max_examples=200)
@given(_values, _values)
def test_equal_digests_mean_equal_values_after_a_round_trip(a, b):
    store = ValueMemory()
    first, second = store.save(a), store.save(b)  # content-addressed: the first stays
    if first == second:
        assert _strict_key(store.load(second)) == _strict_key(b)


def test_same_digest_under_any_hash_seed():
    code = textwrap.dedent(
        """
        from fleche.digest import digest
        words = [f"w{i}" for i in range(50)]
        print(digest(set(words)), digest(frozenset(words)), digest(dict.fromkeys(words, 1)),
              digest({frozenset(words[:3]): {"x", "y"}}))
        """
    )
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_import_does_not_load_numpy_or_pandas():
    code = (
        "import sys; from fleche.digest import digest; digest([1, 'a', {2: 3.0}]);"
        "print('numpy' in sys.modules, 'pandas' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------- stdlib types


def test_dataclass_enum_and_namedtuple():
    assert digest(Point(1, 2.0)) == digest(Point(1, 2.0))
    assert digest(Point(1, 2.0)) != digest(Point(2, 1.0))
    assert digest(Point(1, 2.0)) != digest((1, 2.0))
    assert digest(Color.RED) != digest(Color.GREEN) != digest(1)
    pair = namedtuple("pair", "a b")
    assert digest(pair(1, 2)) != digest((1, 2))


def test_dataclass_fields_outside_equality_are_ignored():
    @dataclasses.dataclass
    class Run:
        n: int
        log: object = dataclasses.field(default=None, compare=False)

    assert digest(Run(1, log=threading.Lock())) == digest(Run(1))


def test_attrs_instances():
    attrs = pytest.importorskip("attrs")

    @attrs.define
    class Config:
        a: int
        b: str = "x"

    assert digest(Config(1)) == digest(Config(1, "x"))
    assert digest(Config(1)) != digest(Config(2))


def test_datetimes():
    paris = timezone(timedelta(hours=2))
    naive = datetime(2024, 5, 17, 12)
    assert digest(naive) != digest(naive.replace(tzinfo=UTC))
    assert digest(naive.replace(tzinfo=paris)) != digest(naive.replace(tzinfo=UTC))
    assert digest(time(1, 2)) != digest(time(1, 2, tzinfo=UTC))
    assert digest(timedelta(days=-1)) != digest(timedelta(days=1))


def test_other_stdlib_values():
    from collections import deque
    from zoneinfo import ZoneInfo

    assert digest(deque([1, 2])) != digest([1, 2])
    assert digest(deque([1], maxlen=3)) != digest(deque([1]))
    assert digest(memoryview(b"ab")) != digest(b"ab")
    assert digest(memoryview(b"abcd")[::2]) == digest(memoryview(b"ac"))
    assert digest(...) != digest(None) != digest(NotImplemented)
    assert digest(ZoneInfo("Europe/Paris")) != digest(ZoneInfo("UTC"))
    assert digest(int) != digest(float)
    assert digest(Color) != digest(Point)  # classes with metaclasses are classes too


def test_paths_by_flavour():
    assert digest(PurePosixPath("a/b")) == digest(PurePosixPath("a//b"))
    assert digest(PurePosixPath("a/b")) != digest(PureWindowsPath("a/b"))


# ---------------------------------------------------------------------- numpy


def test_fortran_order_equals_c_order():
    a = np.arange(24.0).reshape(4, 6)
    f = np.asfortranarray(a)
    assert not f.flags.c_contiguous
    assert digest(f) == digest(a)


def test_strided_views_equal_their_copies(monkeypatch):
    a = np.arange(2000, dtype=np.int64).reshape(40, 50)
    view = a[::3, 1::2]
    assert digest(view) == digest(view.copy())
    monkeypatch.setattr(_digest_numpy, "CHUNK_BYTES", 64)  # force many pieces, rows split
    assert digest(view) == digest(view.copy())
    assert digest(a.T) == digest(a.T.copy())


def test_byte_order_does_not_matter():
    a = np.arange(10, dtype="<f8")
    assert digest(a.astype(">f8")) == digest(a)


def test_array_dtype_and_shape_count():
    a = np.arange(6, dtype=np.int64)
    assert digest(a) != digest(a.astype(np.int32))
    assert digest(a) != digest(a.reshape(2, 3))
    assert digest(np.zeros((0, 3))) != digest(np.zeros((3, 0)))
    assert digest(np.arange(3)) != digest([0, 1, 2])


def test_structured_arrays_ignore_padding():
    fields = [("a", "u1"), ("b", "<f8")]
    packed = np.array([(1, 2.0), (3, 4.0)], dtype=np.dtype(fields))
    aligned = packed.astype(np.dtype(fields, align=True))
    assert aligned.dtype.itemsize != packed.dtype.itemsize
    assert digest(aligned) == digest(packed)
    assert digest(packed) != digest(np.array([(1, 2.0), (3, 5.0)], dtype=fields))


def test_object_arrays_digest_elements():
    assert digest(np.array([1, "a"], dtype=object)) != digest(np.array([1, "b"], dtype=object))
    with pytest.raises(Indigestible) as info:
        digest(np.array([[1, object()]], dtype=object))
    assert info.value.path == "[0, 1]"


def test_masked_arrays_include_the_mask():
    data = np.arange(4.0)
    assert digest(np.ma.masked_array(data, [0, 1, 0, 0])) != digest(np.ma.masked_array(data))
    assert digest(np.ma.masked_array(data)) != digest(data)


def test_numpy_scalars_rng_and_dtypes():
    assert digest(np.float32(1)) != digest(np.float64(1))
    assert digest(np.dtype("f4")) != digest(np.dtype("f8"))
    assert digest(np.random.default_rng(1)) == digest(np.random.default_rng(1))
    assert digest(np.random.default_rng(1)) != digest(np.random.default_rng(2))


def test_numpy_functions_by_name():
    assert digest(np.sum) != digest(np.mean)
    assert digest(np.sin) != digest(np.cos)


def test_foreign_ndarray_subclass_is_refused():
    class Quantity(np.ndarray):
        pass

    with pytest.raises(Indigestible, match="subclass of numpy.ndarray"):
        digest(np.arange(3).view(Quantity))


def test_large_array_streams_like_a_leaf():
    payload = bytes(range(256)) * (ONE_SHOT_MAX // 128)
    head = header(Tag.BYTES)
    pieces = [payload[:1000], payload[1000:]]
    assert stream(head, len(payload), pieces) == leaf(head, payload)


# ---------------------------------------------------------------------- pandas


def test_dataframe_by_values_not_layout():
    frame = pd.DataFrame(np.arange(12.0).reshape(4, 3), columns=["a", "b", "c"])
    from_columns = pd.DataFrame({name: frame[name].to_numpy().copy() for name in "abc"})
    assert digest(frame) == digest(from_columns)
    assert digest(frame) != digest(frame[["b", "a", "c"]])
    assert digest(frame) != digest(frame.set_axis([1, 2, 3, 4]))
    changed = frame.copy()
    changed.iloc[2, 1] = -1.0
    assert digest(changed) != digest(frame)


def test_series_index_and_extension_arrays():
    s = pd.Series([1.0, 2.0], name="v")
    assert digest(s) != digest(s.rename("w"))
    assert digest(pd.RangeIndex(3)) != digest(pd.Index([0, 1, 2]))
    nullable = pd.Series([1, None, 3], dtype="Int64")
    assert digest(nullable) != digest(pd.Series([1, 0, 3], dtype="Int64"))
    aware = pd.Series(pd.date_range("2024", periods=3, tz="Europe/Paris"))
    assert digest(aware) != digest(aware.dt.tz_convert("UTC"))
    assert digest(pd.Categorical(["a", "b"])) != digest(pd.Categorical(["a", "b"], ordered=True))
    mi = pd.MultiIndex.from_tuples([(1, "a"), (2, "b")])
    assert digest(mi) != digest(mi[::-1])
    assert digest(pd.Series(["x", "y"])) == digest(pd.Series(["x", "y"], dtype=object))


def test_dataframe_column_located():
    frame = pd.DataFrame({"a": [1, 2], "b": [3, object()]}, dtype=object)
    with pytest.raises(Indigestible) as info:
        digest(frame)
    assert info.value.path == "['b'][1]"


# ---------------------------------------------------------------------- functions


def test_functions_by_code_and_captured_state():
    def make(k):
        return lambda x: x + k

    assert digest(make(1)) == digest(make(1))
    assert digest(make(1)) != digest(make(2))
    assert digest(lambda x: x + 1) != digest(lambda x: x + 2)
    assert digest(lambda x, y=1: x) != digest(lambda x, y=2: x)


def test_recursive_inner_function():
    def outer():
        def fact(n):
            return 1 if n < 2 else n * fact(n - 1)

        return fact

    assert digest(outer()) == digest(outer())


def test_builtins_methods_partials():
    assert digest(len) != digest(abs)
    assert digest(math.sqrt) != digest(math.exp)
    assert digest([1].append) != digest([2].append)
    assert digest(str.upper) != digest(str.lower)
    assert digest(Point(1, 2.0).__eq__) != digest(Point(1, 3.0).__eq__)
    assert digest(functools.partial(pow, 2)) != digest(functools.partial(pow, 3))


# ---------------------------------------------------------------------- refusals and paths


def test_indigestible_names_its_path():
    with pytest.raises(Indigestible) as info:
        digest({"solver": [1, 2, object()]})
    assert info.value.path == "['solver'][2]"
    assert info.value.type is object
    assert "['solver'][2]" in str(info.value)
    with pytest.raises(Indigestible) as info:
        digest([Point(1, object())])
    assert info.value.path == "[0].y"


def test_refusals_give_reasons():
    def numbers():
        yield 1

    with pytest.raises(Indigestible, match="generators are consumed"):
        digest(numbers())
    with pytest.raises(Indigestible, match="iterators are consumed"):
        digest(iter([1]))
    with pytest.raises(Indigestible, match="file objects"):
        digest(io.BytesIO(b"x"))
    with pytest.raises(Indigestible, match="locks"):
        digest(threading.Lock())


def test_recursive_structures_are_indigestible():
    looped = [1]
    looped.append(looped)
    with pytest.raises(Indigestible, match="recursive structure") as info:
        digest(looped)
    assert info.value.path == "[1]"
    nested = {}
    nested["x"] = {"y": nested}
    with pytest.raises(Indigestible, match="recursive structure"):
        digest_raw(nested)


def test_deep_nesting_is_indigestible_not_recursion_error():
    deep: list = []
    for _ in range(sys.getrecursionlimit() + 10):
        deep = [deep]
    with pytest.raises(Indigestible, match="recursion limit"):
        digest(deep)


# ---------------------------------------------------------------------- hooks


class Celsius:
    def __init__(self, degrees):
        self.degrees = degrees


class Kelvin(Celsius):
    pass


@pytest.fixture
def celsius_hook():
    add_hook(Celsius, lambda c: c.degrees)
    yield
    remove_hook(Celsius)


@pytest.mark.usefixtures("celsius_hook")
def test_hook_applies_to_the_type_and_subclasses():
    assert digest(Celsius(1)) == digest(Celsius(1))
    assert digest(Celsius(1)) != digest(Celsius(2))
    assert digest(Celsius(1)) != digest(1)
    assert digest(Kelvin(1)) != digest(Celsius(1))  # tagged by the object's own type
    assert digest([Kelvin(3)]) == digest([Kelvin(3)])


@pytest.mark.usefixtures("celsius_hook")
def test_hook_replace_semantics():
    before = digest(Celsius(1))
    with pytest.raises(ValueError, match="already registered"):
        add_hook(Celsius, lambda c: -c.degrees)
    add_hook(Celsius, lambda c: -c.degrees, replace=True)
    assert digest(Celsius(1)) != before  # the cached resolution was dropped
    assert digest(Celsius(1)) == digest(Celsius(1))


def test_hooks_cannot_override_builtins_and_removal_is_checked():
    with pytest.raises(ValueError, match="built-in digest rule"):
        add_hook(int, str)
    with pytest.raises(KeyError):
        remove_hook(Celsius)
    by_state = digest(Celsius(1))
    add_hook(Celsius, lambda c: -c.degrees)
    try:
        assert digest(Celsius(1)) != by_state  # the hook wins over the state rule
    finally:
        remove_hook(Celsius)
    assert digest(Celsius(1)) == by_state  # and without it, the state rule is back


def test_plain_instances_digest_by_class_and_state():
    class Slotted:
        __slots__ = ("x", "y")

        def __init__(self, x, y):
            self.x, self.y = x, y

    assert digest(Celsius(1)) == digest(Celsius(1)) != digest(Celsius(2))
    assert digest(Kelvin(1)) != digest(Celsius(1))  # the class counts
    assert digest(Slotted(1, 2)) == digest(Slotted(1, 2)) != digest(Slotted(1, 3))
    with pytest.raises(Indigestible, match=r"at \.__dict__\['degrees'\]"):
        digest(Celsius(threading.Lock()))
    with pytest.raises(Indigestible):
        digest(object())  # a sentinel: its identity is all it has
    with pytest.raises(Indigestible, match="iterators"):
        digest(iter([1]))


def test_dunder_digest():
    class Named:
        def __init__(self, name):
            self.name = name

        def __digest__(self):
            return self.name

    class Pinned:
        def __digest__(self):
            return Digest("ab" * 16)

    class Short:
        def __digest__(self):
            return Digest("ab")

    assert digest(Named("a")) == digest(Named("a")) != digest(Named("b"))
    assert digest(Named("a")) != digest("a")
    assert digest(Pinned()) == "ab" * 16
    with pytest.raises(ValueError, match="expanded"):
        digest(Short())


def test_entry_point_plugin_registers_hooks(tmp_path, monkeypatch):
    (tmp_path / "fleche_test_plugin.py").write_text(
        textwrap.dedent(
            """
            class Widget:
                def __init__(self, size):
                    self.size = size

            def register():
                from fleche.digest import add_hook
                add_hook(Widget, lambda w: w.size, replace=True)
            """
        )
    )
    info = tmp_path / "fleche_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fleche-test-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text("[fleche]\nwidget = fleche_test_plugin:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from fleche_test_plugin import Widget

    try:
        assert digest(Widget(2)) != digest(Widget(3))
    finally:
        remove_hook(Widget)


if __name__ == "__main__":
    if sys.argv[1:] == ["--regenerate"]:
        _regenerate()
        print(f"wrote {GOLDEN_PATH} (scheme version {SCHEME_VERSION})")
    else:
        sys.exit("usage: python tests/test_digest.py --regenerate")
