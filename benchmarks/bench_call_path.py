"""How many fleche functions a miss and a hit run, and how often they change module.

Run:  PYTHONPATH=. python benchmarks/bench_call_path.py [--dir DIR]

Counts, with :func:`sys.setprofile`, every call of a Python function defined
in the ``fleche`` package during one decorated miss (compute + store) and one
hit on the default store (pickle files + SQLite calls), after a warm-up miss
and hit on other arguments.  A *module change* is a call whose module differs
from its caller's fleche module.  Issue 12's target: a miss with at most half
the calls and module changes of 263 / 103; a hit no more than 69 calls.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import print_table  # noqa: E402

import fleche as fleche_package  # noqa: E402
from fleche import Cache, fleche  # noqa: E402
from fleche.storage import Sql, ValuePickleFile  # noqa: E402

PACKAGE = str(Path(fleche_package.__file__).parent)


def traced(func) -> tuple[int, int, collections.Counter]:
    """Fleche calls, module changes and calls per module while ``func()`` runs."""
    calls = 0
    changes = 0
    per_module: collections.Counter = collections.Counter()
    stack: list[str | None] = []

    def profile(frame, event, arg):  # noqa: ANN001, ARG001
        nonlocal calls, changes
        if event == "call":
            filename = frame.f_code.co_filename
            module = filename[len(PACKAGE) + 1 :] if filename.startswith(PACKAGE) else None
            if module is not None:
                calls += 1
                per_module[module] += 1
                caller = next((m for m in reversed(stack) if m is not None), None)
                if caller is not None and caller != module:
                    changes += 1
            stack.append(module)
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(profile)
    try:
        func()
    finally:
        sys.setprofile(None)
    return calls, changes, per_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where the store lives (default: a temporary directory)")
    parser.add_argument("--modules", action="store_true", help="also print calls per module")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=options.dir) as tmp:
        root = Path(tmp)
        store = Cache(ValuePickleFile(root=root / "values"), Sql(url=str(root / "calls.db")))

        @fleche(cache=store)
        def tiny(x: int) -> list[int]:
            return [x, x + 1]

        tiny(-1)
        tiny(-1)
        results = {"miss + store": traced(lambda: tiny(1)), "hit": traced(lambda: tiny(1))}
    print_table(
        "fleche functions run by one call on the default store",
        ["path", "calls", "module changes", "modules"],
        [
            (path, calls, changes, len(modules))
            for path, (calls, changes, modules) in results.items()
        ],
    )
    if options.modules:
        for path, (_, _, modules) in results.items():
            print_table(f"{path}: calls per module", ["module", "calls"], modules.most_common())


if __name__ == "__main__":
    main()
