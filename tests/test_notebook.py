"""Functions defined in notebook cells and ``__main__`` scripts keep their keys.

A notebook cell is code compiled under a per-kernel file name
(``/tmp/ipykernel_<pid>/<hash>.py``) and run in the ``__main__`` namespace.
The "cells" here are run the same way, through ``exec`` in fresh
``__main__``-like globals, in two separate processes (two kernel sessions)
sharing one pickle-file store: the second session must hit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import fleche as fleche_package
from fleche import Cache, fleche
from fleche.storage import CallPickleFile, ValuePickleFile

REPO = Path(fleche_package.__file__).resolve().parent.parent

CELL_SIMULATE = """
from fleche import fleche

@fleche()
def simulate(temperature, steps=10):
    RUNS.append(("simulate", temperature))
    return [temperature * s for s in range(steps)]

OUT["simulate_before"] = simulate.contains(300)
OUT["simulate_key"] = simulate.digest(300)
OUT["simulate"] = simulate(300)[-1]
"""

CELL_G_FIRST = """
from fleche import fleche

@fleche(hash_code=True)
def g(x):
    RUNS.append(("g+1", x))
    return x + 1

OUT["g_first_before"] = g.contains(1)
OUT["g_first_key"] = g.digest(1)
OUT["g_first"] = g(1)
"""

CELL_G_SECOND = """
from fleche import fleche

@fleche(hash_code=True)
def g(x):
    RUNS.append(("g*10", x))
    return x * 10

OUT["g_second_before"] = g.contains(1)
OUT["g_second_key"] = g.digest(1)
OUT["g_second"] = g(1)
"""

SESSION = """
import json, os, sys
import fleche
from fleche import Cache
from fleche.storage import CallPickleFile, ValuePickleFile

root, counter = sys.argv[1], int(sys.argv[2])
store = Cache(ValuePickleFile(root=os.path.join(root, "values")), CallPickleFile(root=os.path.join(root, "calls")))
fleche.cache(store)
namespace = {"__name__": "__main__", "__builtins__": __builtins__, "RUNS": [], "OUT": {}}
for n, source in enumerate(json.loads(sys.stdin.read())):
    # like IPython: a file name that changes with every kernel and cell execution
    code = compile(source, f"/tmp/ipykernel_{os.getpid()}/{counter + n}.py", "exec")
    exec(code, namespace)
print(json.dumps({"runs": namespace["RUNS"], "out": namespace["OUT"]}))
"""


def run_session(root: Path, cells: list[str], counter: int, seed: str) -> dict:
    """One kernel session in a fresh interpreter; returns what its cells recorded."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", SESSION, str(root), str(counter)],
        input=json.dumps(cells),
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_kernel_session_hits(tmp_path):
    cells = [CELL_SIMULATE, CELL_G_FIRST, CELL_G_SECOND]
    first = run_session(tmp_path, cells, counter=1, seed="1")
    assert first["out"]["simulate_before"] is False
    assert first["out"]["g_first"] == 2
    assert first["out"]["g_second"] == 10  # same name, other code: no collision
    assert first["out"]["g_first_key"] != first["out"]["g_second_key"]
    assert first["runs"] == [["simulate", 300], ["g+1", 1], ["g*10", 1]]

    # A restarted kernel: new process, other hash seed, other cell numbers and order.
    second = run_session(
        tmp_path, [CELL_G_SECOND, CELL_SIMULATE, CELL_G_FIRST], counter=40, seed="2"
    )
    assert second["runs"] == []  # every call hit
    out = second["out"]
    assert out["simulate_before"] and out["g_first_before"] and out["g_second_before"]
    for name in ("simulate_key", "g_first_key", "g_second_key"):
        assert out[name] == first["out"][name]
    assert (out["simulate"], out["g_first"], out["g_second"]) == (2700, 2, 10)


def test_rerunning_a_cell_keeps_the_key(tmp_path):
    first = run_session(tmp_path, [CELL_SIMULATE, CELL_SIMULATE], counter=1, seed="3")
    assert first["runs"] == [["simulate", 300]]  # the re-run cell hit


def exec_cell(source: str, filename: str, namespace: dict | None = None) -> dict:
    namespace = namespace if namespace is not None else {"__name__": "__main__", "fleche": fleche}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def test_main_identity_is_module_and_qualname(memory):
    cell = "@fleche()\ndef h(x):\n    return x\n"
    namespace = exec_cell(cell, "<cell 1>")
    h = namespace["h"]
    assert (h.module, h.name) == ("__main__", "h")


def test_code_digest_ignores_file_name_and_line_numbers(memory):
    cell = "@fleche(hash_code=True)\ndef h(x):\n    return x + 1\n"
    one = exec_cell(cell, "/tmp/ipykernel_1/11.py")["h"]
    two = exec_cell("\n\n\n" + cell, "/tmp/ipykernel_2/99.py")["h"]
    assert one.digest(1) == two.digest(1)
    other = exec_cell(cell.replace("x + 1", "x + 2"), "/tmp/ipykernel_1/12.py")["h"]
    assert other.digest(1) != one.digest(1)


def test_same_name_without_hash_code_shares_calls(memory):
    # Documented: without hash_code (or a version), a redefinition is the same function.
    one = exec_cell("@fleche()\ndef k(x):\n    return 1\n", "<a>")["k"]
    two = exec_cell("@fleche()\ndef k(x):\n    return 2\n", "<b>")["k"]
    assert one.digest(0) == two.digest(0)
    three = exec_cell("@fleche(version='2')\ndef k(x):\n    return 2\n", "<c>")["k"]
    assert three.digest(0) != one.digest(0)


def test_pickle_store_keys_match_in_process(tmp_path):
    # The same cell in this process finds what the subprocess stored.
    run_session(tmp_path, [CELL_SIMULATE], counter=5, seed="4")
    store = Cache(
        ValuePickleFile(root=tmp_path / "values"), CallPickleFile(root=tmp_path / "calls")
    )
    namespace = {"__name__": "__main__", "RUNS": [], "OUT": {}}
    with fleche_package.cache(store):
        exec(compile(textwrap.dedent(CELL_SIMULATE), "<here>", "exec"), namespace)
    assert namespace["OUT"]["simulate_before"] is True and namespace["RUNS"] == []
