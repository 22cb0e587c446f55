"""Explaining a miss: the nearest stored calls and exactly what differs."""

from __future__ import annotations

import numpy as np
import pytest

from fleche import D, fleche
from fleche.digest import digest
from fleche.explain import explain, summarize


def define(source: str, module: str = "__main__", name: str = "simulate"):
    """A decorated function defined in a module named ``module`` (like a notebook cell)."""
    namespace = {"__name__": module, "fleche": fleche, "np": np}
    exec(compile(source, f"<{module}>", "exec"), namespace)
    return namespace[name]


SIMULATE = """
@fleche({options})
def simulate(temperature, steps=1000, label="run"):
    return temperature * steps
"""


def simulate_in(module: str = "lab", **options):
    return define(
        SIMULATE.format(options=", ".join(f"{k}={v!r}" for k, v in options.items())), module
    )


def test_a_stored_call_says_so(memory):
    simulate = simulate_in()
    simulate(300)
    report = simulate.explain(300)
    assert report.stored and report.status == "stored" and report.nearest == ()
    assert report.key == simulate.digest(300)
    assert "is stored" in str(report)


def test_a_short_digest_argument_is_explained_as_the_value_it_names(memory):
    simulate = simulate_in()
    simulate(300)
    stored = memory.load(simulate.digest(300)).digested_call.arguments["temperature"]
    short = D(memory.shrink(stored))
    report = simulate.explain(short)
    assert report.stored and report.key == simulate.digest(300)
    assert report.arguments["temperature"] == stored


def test_one_differing_argument_is_named_with_digests_and_values(memory):
    simulate = simulate_in()
    simulate(300, steps=1000)
    report = simulate.explain(300, steps=2000)
    assert not report.stored and report.status == "missing"
    near = report.nearest[0]
    assert near.distance == 1
    (diff,) = near.differences
    assert (diff.field, diff.argument) == ("arguments", "steps")
    assert diff.wanted == digest(2000) and diff.stored == digest(1000)
    assert memory.expand(diff.stored_short) == digest(
        1000
    )  # a usable short digest of the stored value
    assert diff.wanted_short.startswith(digest(2000)[:8]) and "not stored" in diff.wanted_short
    assert (diff.wanted_summary, diff.stored_summary) == ("2000", "1000")
    assert near.key == simulate.digest(300, steps=1000)
    text = str(report)
    assert "not stored" in text and "'steps'" in text and "2000" in text and "1000" in text
    assert diff.stored_short in text


def test_nearest_calls_are_ranked_by_differences(memory):
    simulate = simulate_in()
    simulate(1, steps=1, label="a")  # 3 differences from the call below
    simulate(300, steps=1, label="b")  # 2 differences
    simulate(300, steps=5, label="c")  # 1 difference
    report = simulate.explain(300, steps=5, label="z")
    assert [n.distance for n in report.nearest] == [1, 2, 3]
    assert [d.argument for d in report.nearest[1].differences] == ["label", "steps"]
    assert report.same_function == 3
    from fleche.wrapper import CachedFunction

    assert isinstance(simulate, CachedFunction)
    assert len(explain(simulate, (300,), {"steps": 5, "label": "z"}, limit=1).nearest) == 1


def test_version_difference(memory):
    old = simulate_in(version="1")
    old(300)
    new = simulate_in(version="2")
    report = new.explain(300)
    assert report.same_function == 0
    (diff,) = report.nearest[0].differences
    assert (diff.field, diff.wanted, diff.stored) == ("version", "2", "1")
    text = str(report)
    assert "No call of this function" in text and "version '1'" in text


def test_module_difference_and_calls_elsewhere(memory):
    simulate_in("lab.old")(300)
    simulate_in("lab.old")(301)
    report = simulate_in("lab.new").explain(300)
    assert report.same_function == 0
    assert [(i.module, i.calls) for i in report.identities] == [("lab.old", 2)]
    best = report.nearest[0]
    assert [(d.field, d.wanted, d.stored) for d in best.differences] == [
        ("module", "lab.new", "lab.old")
    ]
    assert "lab.old" in str(report) and "2 calls of the same name" in str(report)


def test_module_left_out_of_the_key_is_not_a_difference(memory):
    simulate_in("lab.old", hash_module=False)(300)
    moved = simulate_in("lab.new", hash_module=False)
    assert moved.explain(300).stored


def test_code_difference(memory):
    source = SIMULATE.format(options="hash_code=True")
    define(source, "lab")(300)
    changed = define(source.replace("temperature * steps", "temperature + steps"), "lab")
    report = changed.explain(300)
    (diff,) = report.nearest[0].differences
    assert diff.field == "code" and diff.wanted != diff.stored and diff.wanted is not None
    assert "code" in str(report)
    plain = define(SIMULATE.format(options=""), "lab")
    (diff,) = plain.explain(300).nearest[0].differences
    assert diff.field == "code" and diff.wanted is None
    assert "hash_code=False" in str(diff)


def test_changed_signature_names_the_missing_argument(memory):
    simulate_in()(300)
    wider = define(
        "@fleche()\ndef simulate(temperature, steps=1000, label='run', seed=0):\n    return 1\n",
        "lab",
    )
    (diff,) = wider.explain(300).nearest[0].differences
    assert (diff.argument, diff.stored, diff.wanted) == ("seed", None, digest(0))
    assert "only in this call" in str(diff)
    narrower = define("@fleche()\ndef simulate(temperature, steps=1000):\n    return 1\n", "lab")
    (diff,) = narrower.explain(300).nearest[0].differences
    assert (diff.argument, diff.wanted, diff.stored_summary) == ("label", None, "'run'")
    assert "only in the stored call" in str(diff)


def test_no_stored_call_of_the_name(memory):
    report = simulate_in().explain(1)
    assert report.status == "missing" and report.nearest == () and report.identities == ()
    assert "No call of 'simulate' is stored" in str(report)


def test_function_moved_into_a_class_finds_the_old_calls(memory):
    simulate_in("lab")(300)
    moved = define(
        "class Lab:\n    @staticmethod\n    @fleche()\n    def simulate(temperature, steps=1000, label='run'):\n"
        "        return 0\n",
        "lab",
        name="Lab",
    ).simulate
    report = moved.explain(300)
    assert report.renamed
    assert [(d.field, d.wanted, d.stored) for d in report.nearest[0].differences] == [
        ("name", "Lab.simulate", "simulate")
    ]
    assert "same short name" in str(report)


def test_indigestible_call(memory):
    report = simulate_in().explain(iter([1]))
    assert report.status == "indigestible" and not report.stored
    assert "iterator" in report.detail and "cannot be cached" in str(report)


def test_damaged_call_is_reported(memory):
    simulate = simulate_in()
    simulate(3)
    memory.values.evict(simulate.record(3).digested_call.result)
    report = simulate.explain(3)
    assert report.status == "damaged" and "result value" in report.detail
    assert "recomputes" in str(report)


def test_values_are_summarised_and_loading_can_be_turned_off(memory):
    @fleche()
    def fit(data, order=1):
        return float(np.sum(data))

    fit(np.zeros((50, 3)))
    report = fit.explain(np.ones((50, 3)))
    (diff,) = report.nearest[0].differences
    assert diff.stored_summary == diff.wanted_summary == "ndarray(shape=(50, 3), dtype=float64)"
    quiet = explain(fit, (np.ones((50, 3)),), {}, load_values=False)
    (diff,) = quiet.nearest[0].differences
    assert diff.stored_summary == "" and diff.wanted_summary != ""


def test_summaries_are_short():
    assert len(summarize("x" * 1000)) < 60
    assert len(summarize(list(range(1000)))) < 60

    class Broken:
        def __repr__(self):
            raise RuntimeError

    assert "Broken" in summarize(Broken())  # never raises


def test_bound_method_explain(memory):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Model:
        rate: float

        @fleche()
        def predict(self, x):
            return self.rate * x

    Model(0.5).predict(2)
    report = Model(0.7).predict.explain(2)
    (diff,) = report.nearest[0].differences
    assert diff.argument == "self" and "0.5" in diff.stored_summary and "0.7" in diff.wanted_summary


@pytest.mark.parametrize("steps", [1000, 2000])
def test_str_is_readable(memory, steps):
    simulate = simulate_in()
    simulate(300)
    text = str(simulate.explain(300, steps=steps))
    assert text.splitlines()[0].startswith("lab.simulate [key ")
