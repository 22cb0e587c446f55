"""``hash_code=True`` follows the module globals and the helpers a function uses."""

from __future__ import annotations

import importlib
import math
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from fleche._code_deps import code_digest

MODULE = """
import math

import numpy as np

from fleche import fleche

K = {k}
TABLE = {{"scale": {scale}}}
SCALES = (1, {scale})
LOG = []


@fleche(hash_code=True)
def simulate(x):
    LOG.append(x)
    return helper(x) * K + SCALES[-1] + TABLE["scale"] + math.floor(np.sum([x]))


def helper(x):  # defined after the decorated function: resolved at the first call
    return x + {offset}


@fleche(hash_code=True)
def uses_decorated(x):
    return cached_step(x) + 1


@fleche
def cached_step(x):
    return x * {step}


@fleche(hash_code=True)
def untouched(x):
    return x - 1
"""


def _load(tmp_path: Path, **values) -> object:
    """The user module ``user_model`` written from MODULE with the given constants.

    Each version lives in its own folder, as one file edited between two runs.
    """
    folder = tmp_path / uuid.uuid4().hex[:8]
    folder.mkdir()
    settings = {"k": 2, "scale": 1, "offset": 0, "step": 3, **values}
    (folder / "user_model.py").write_text(textwrap.dedent(MODULE.format(**settings)))
    sys.modules.pop("user_model", None)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("user_model")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("user_model", None)


@pytest.fixture
def baseline(tmp_path):
    return _load(tmp_path)


@pytest.mark.parametrize(
    "change", [{"k": 5}, {"scale": 2}, {"offset": 1}], ids=["global", "global-tuple", "helper"]
)
def test_a_change_the_body_depends_on_changes_the_key(tmp_path, baseline, change, memory):
    changed = _load(tmp_path, **change)
    assert changed.simulate.digest(1) != baseline.simulate.digest(1)


def test_mutable_globals_are_state_not_code(baseline, memory):
    key = baseline.simulate.digest(1)
    baseline.simulate(1)
    baseline.LOG.extend([7, 8])
    baseline.TABLE["scale"] = 9  # state: counts by type, so the key stays
    assert baseline.simulate.digest(1) == key and baseline.simulate.contains(1)


def test_unrelated_changes_keep_the_key(tmp_path, baseline, memory):
    changed = _load(tmp_path, k=5, scale=2, offset=1, step=4)
    assert changed.untouched.digest(1) == baseline.untouched.digest(1)


def test_decorated_helpers_are_followed_to_their_body(tmp_path, baseline, memory):
    changed = _load(tmp_path, step=4)
    assert changed.uses_decorated.digest(1) != baseline.uses_decorated.digest(1)
    assert changed.simulate.digest(1) == baseline.simulate.digest(1)


def test_the_same_source_gives_the_same_key(tmp_path, baseline, memory):
    again = _load(tmp_path)
    assert again.simulate.digest(1) == baseline.simulate.digest(1)
    assert baseline.simulate(1) == 1 * 2 + 1 + 1 + 1
    assert again.simulate.contains(1)  # a second process with the same code hits


rounding = math.floor


def rounded(x):
    return rounding(x)


def test_library_functions_count_by_name(monkeypatch):
    before = code_digest(rounded)
    assert code_digest(rounded) == before
    monkeypatch.setattr(sys.modules[__name__], "rounding", math.ceil)
    assert code_digest(rounded) != before


def test_globals_without_a_digest_count_by_type(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "rounding", threading.Lock())
    assert code_digest(rounded) == code_digest(rounded)


def missing_helper_caller(x):
    return not_defined_yet(x)  # noqa: F821


def test_a_name_defined_later_counts_once_defined(monkeypatch):
    before = code_digest(missing_helper_caller)
    monkeypatch.setattr(sys.modules[__name__], "not_defined_yet", abs, raising=False)
    assert code_digest(missing_helper_caller) != before
