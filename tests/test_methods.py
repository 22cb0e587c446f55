"""The decorator on methods (instance, class, static) and on arguments it must refuse."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from fleche import CacheWarning, Indigestible, Required, fleche
from fleche.methods import BoundCachedFunction


@dataclasses.dataclass(frozen=True)
class Grid:
    """A dataclass: ``self`` is keyed by its fields."""

    size: int
    runs: list = dataclasses.field(default_factory=list, compare=False)

    @fleche()
    def solve(self, steps, scale=1.0):
        self.runs.append(steps)
        return self.size * steps * scale

    @classmethod
    @fleche()
    def make(cls, size):
        RUNS.append(("make", size))
        return cls(size)

    @fleche()
    @classmethod
    def describe(cls, what):
        RUNS.append(("describe", what))
        return f"{cls.__name__}:{what}"

    @staticmethod
    @fleche()
    def area(n):
        RUNS.append(("area", n))
        return n * n

    @fleche()
    @staticmethod
    def volume(n):
        RUNS.append(("volume", n))
        return n**3


RUNS: list = []


class Plain:
    """A plain class: no digest rule for its instances."""

    def __init__(self, factor):
        self.factor = factor
        self.runs = []

    @fleche()
    def scaled(self, x):
        self.runs.append(x)
        return self.factor * x

    @fleche(ignore=("self",))
    def shared(self, x):
        self.runs.append(x)
        return 10 * x


class Keyed(Plain):
    """A plain class made cacheable by a ``__digest__`` method."""

    def __digest__(self):
        return self.factor


def test_dataclass_method_hits_for_equal_instances(memory):
    a, b = Grid(3), Grid(3)
    assert a.solve(2) == 6 and a.solve(2) == 6
    assert b.solve(2) == 6  # an equal instance: the same call
    assert a.runs == [2] and b.runs == []
    c = Grid(4)
    assert c.solve(2) == 8 and c.runs == [2]  # other fields: another call


def test_method_identity_includes_the_class(memory):
    assert Grid.solve.name == "Grid.solve"
    Grid(1).solve(1)
    assert Grid.solve.query().only().name == "Grid.solve"


def test_bound_helpers_pass_the_instance(memory):
    grid = Grid(5)
    method = grid.solve
    assert isinstance(method, BoundCachedFunction)
    assert not method.contains(2)
    with pytest.raises(KeyError):
        method.load(2)
    assert method(2) == 10
    assert method.contains(2) and method.load(2) == 10
    assert method.digest(2) == Grid.solve.digest(grid, 2) == Grid(5).solve.digest(2)
    assert method.call(2).arguments == {"self": grid, "steps": 2, "scale": 1.0}
    assert method.record(2).result == 10
    assert method.explain(2).stored
    assert not method.explain(3).stored
    assert method.rerun(2) == 10 and grid.runs == [2, 2]
    assert method.__self__ is grid and method.__func__ is Grid.solve
    assert method == grid.solve and hash(method) == hash(grid.solve)
    assert method.__name__ == "solve" and "Grid.solve" in repr(method)


def test_calling_through_the_class_is_the_same_call(memory):
    grid = Grid(2)
    assert Grid.solve(grid, 3) == 6
    assert grid.solve(3) == 6 and grid.runs == [3]
    assert Grid.solve(self=grid, steps=3) == 6  # 'self' by keyword too
    assert grid.runs == [3]


def test_bound_query_finds_this_instance_only(memory):
    Grid(1).solve(1)
    Grid(2).solve(1)
    Grid(2).solve(2)
    assert Grid(2).solve.query().count() == 2
    assert Grid(2).solve.query(steps=2).count() == 1
    assert Grid.solve.query().count() == 3


def test_bound_query_by_position_and_the_0_22_helpers(memory):
    grid = Grid(2)
    grid.solve(1)
    grid.solve(2)
    Grid(3).solve(2)
    assert grid.solve.query(2).count() == 1  # positional after the bound instance
    assert grid.solve.query(None).count() == 2  # None is a wildcard
    assert grid.solve.fleche.digest(2) == grid.solve.digest(2)
    bound = grid.solve.bind(5)
    assert bound() == 10 and grid.solve.contains(5)


def test_bound_query_by_position_with_an_ignored_instance(memory):
    first, second = Plain(2), Plain(3)
    first.shared(1)
    second.shared(2)
    assert first.shared.query(2).count() == 1  # 2 is x, not self; self is not matched
    assert first.shared.query().count() == 2


def test_classmethod_in_both_orders(memory):
    RUNS.clear()
    assert Grid.make(3) == Grid(3) and Grid(9).make(3) == Grid(3)
    assert Grid.describe("x") == "Grid:x" and Grid(1).describe("x") == "Grid:x"
    assert RUNS == [("make", 3), ("describe", "x")]
    assert Grid.make.contains(3) and Grid.describe.contains("x")
    assert Grid.describe.call("x").arguments == {"cls": Grid, "what": "x"}
    assert Grid.make.__func__.name == "Grid.make" and Grid.describe.__func__.name == "Grid.describe"


def test_classmethod_key_depends_on_the_class(memory):
    class Sub(Grid):
        pass

    RUNS.clear()
    assert Sub.describe("x") == "Sub:x" and Grid.describe("x") == "Grid:x"
    assert len(RUNS) == 2


def test_staticmethod_in_both_orders(memory):
    RUNS.clear()
    assert Grid.area(3) == 9 and Grid(1).area(3) == 9
    assert Grid.volume(2) == 8 and Grid(1).volume(2) == 8
    assert RUNS == [("area", 3), ("volume", 2)]
    assert Grid.volume.contains(2) and Grid(1).area.contains(3)
    assert Grid.volume.name == "Grid.volume"


class Counted:
    """A plain class whose state is digestible: keyed by it."""

    def __init__(self, factor):
        self.factor = factor

    @fleche()
    def scaled(self, x):
        RUNS.append(("scaled", self.factor, x))
        return self.factor * x


class Locked(Counted):
    """A plain class holding a lock: its state has no digest."""

    def __init__(self, factor):
        super().__init__(factor)
        self.guard = threading.Lock()


def test_plain_instance_is_keyed_by_its_class_and_state(memory):
    RUNS.clear()
    assert Counted(2).scaled(3) == 6 and Counted(2).scaled(3) == 6  # equal state: one run
    assert Counted(5).scaled(3) == 15
    assert RUNS == [("scaled", 2, 3), ("scaled", 5, 3)]
    assert Counted.scaled.query().count() == 2


def test_plain_instance_with_indigestible_state_runs_uncached_with_a_warning(memory):
    RUNS.clear()
    obj = Locked(2)
    with pytest.warns(CacheWarning, match=r"\.__dict__\['guard'\]"):
        assert obj.scaled(3) == 6
    with pytest.warns(CacheWarning):
        assert obj.scaled(3) == 6
    assert RUNS == [("scaled", 2, 3)] * 2
    assert Locked.scaled.query().count() == 0


def test_ignore_self_shares_calls_between_instances(memory):
    first, second = Plain(1), Plain(2)
    assert first.shared(4) == 40 and second.shared(4) == 40
    assert first.runs == [4] and second.runs == []
    assert second.shared.query().count() == 1  # self is not matched: it is not in the key


def test_digest_method_makes_a_plain_class_cacheable(memory):
    a, b, c = Keyed(2), Keyed(2), Keyed(3)
    assert a.scaled(5) == 10 and b.scaled(5) == 10 and c.scaled(5) == 15
    assert a.runs == [5] and b.runs == [] and c.runs == [5]


def test_generator_argument_is_refused_not_consumed(memory):
    seen = []

    @fleche()
    def total(values):
        seen.append("run")
        return sum(values)

    with pytest.warns(CacheWarning, match="generator"):
        assert total(x for x in range(4)) == 6  # the body got every element
    with pytest.warns(CacheWarning, match="iterator"):
        assert total(iter([1, 2, 3])) == 6
    with pytest.warns(CacheWarning, match="iterator"):
        assert total(map(int, "12")) == 3
    assert seen == ["run"] * 3 and total.query().count() == 0
    assert total(range(4)) == 6 and total(range(4)) == 6  # a range is a value, not an iterator
    assert seen == ["run"] * 4


def test_required_generator_raises_before_reading_it(memory):
    @fleche()
    def total(values: Required[object]):
        return sum(values)

    gen = (x for x in range(3))
    with pytest.raises(Indigestible, match="generator"):
        total(gen)
    assert list(gen) == [0, 1, 2]  # untouched
    with pytest.raises(Indigestible, match="arguments\\['values'\\]"):
        total.digest(iter([1]))


def test_bound_method_pickles_by_name(memory):
    import pickle

    method = pickle.loads(pickle.dumps(Grid(7).solve))
    assert isinstance(method, BoundCachedFunction) and method.__self__ == Grid(7)
    assert method(1) == 7
    assert pickle.loads(pickle.dumps(Grid.describe))("y") == "Grid:y"
