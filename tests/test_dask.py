"""wrap_executor on a real local Dask cluster: each call once, in the submitter's store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fleche import cache, fleche, tags, wrap_executor

distributed = pytest.importorskip(
    "distributed", reason="Dask distributed is not installed (pip install 'fleche[dask]')"
)

pytestmark = pytest.mark.timeout(120)

#: A sweep with duplicates: 50 calls of 20 distinct ones.
SWEEP = [i % 20 for i in range(50)]


@fleche(version="1", ignore=("log",))
def square(x, log):
    """Leaves one file in ``log`` per computation (the argument is not part of the key)."""
    Path(log, f"{x}-{os.getpid()}-{os.urandom(4).hex()}").touch()
    return x * x


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each, on loopback."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as connected,
    ):
        yield connected


def computed(log: Path) -> list[int]:
    """The arguments of the computations that left a file in ``log``, sorted."""
    return sorted(int(path.name.split("-")[0]) for path in log.iterdir())


@pytest.mark.parametrize("options", [{}, {"pure": False}], ids=["default", "impure"])
def test_a_sweep_computes_each_call_once(client, options, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    store = tmp_path / "store"
    with cache(str(store)), tags(sweep="a"):
        with wrap_executor(client.get_executor(**options)) as pool:
            futures = [pool.submit(square, x, str(log)) for x in SWEEP[:10]]
            mapped = list(pool.map(square, SWEEP, [str(log)] * len(SWEEP)))
        assert [f.result() for f in futures] == [x * x for x in SWEEP[:10]]
        assert mapped == [x * x for x in SWEEP]
        assert computed(log) == sorted(set(SWEEP))  # each distinct call once, in the workers
        assert all(square.contains(x, str(log)) for x in SWEEP)
        assert square.record(3, str(log)).metadata["tags"] == {"sweep": "a"}
        # Stored calls resolve at submission, without the cluster.
        with wrap_executor(client.get_executor(**options)) as pool:
            again = [pool.submit(square, x, str(log)) for x in SWEEP]
        assert all(f.done() for f in again)
    assert computed(log) == sorted(set(SWEEP))
    assert (store / "calls.db").exists()


def test_shutdown_passes_other_keywords_through(client):
    pool = wrap_executor(client.get_executor())
    # Dask's shutdown takes no ``cancel_futures``: asked for, it is Dask that refuses.
    with pytest.raises(TypeError, match="cancel_futures"):
        pool.shutdown(cancel_futures=True)
    pool.shutdown(wait=False)
    with pytest.raises(RuntimeError):
        pool.submit(abs, -1)


@fleche(version="1")
def options(key, workers=None, priority=0, pure=True):
    """Parameters named as options of Dask's ``submit``: they must reach the function."""
    return [key, workers, priority, pure]


def test_keywords_named_as_dask_options_go_to_the_function(client, tmp_path):
    with cache(str(tmp_path / "store")), wrap_executor(client.get_executor()) as pool:
        future = pool.submit(options, "k", workers="w", priority=7, pure="p")
        assert future.result(timeout=60) == ["k", "w", 7, "p"]
        assert options.contains("k", workers="w", priority=7, pure="p")


@fleche(version="1")
def total(data, factor):
    return sum(data) * factor


def test_scattered_data_reaches_the_function_as_its_value(client, tmp_path):
    data = list(range(1000))
    scattered = client.scatter(data)
    with cache(str(tmp_path / "store")), wrap_executor(client.get_executor()) as pool:
        assert pool.submit(total, scattered, 2).result(timeout=60) == 999000
        assert total.query().only().arguments["data"] == data  # stored as the value
        assert pool.submit(total, data, 2).done()  # the same call, stored


def test_a_client_is_not_an_executor(client):
    with pytest.raises(TypeError, match=r"client.get_executor\(\)"):
        wrap_executor(client)


SCRIPT = """
import json
import os
import sys
from pathlib import Path

from distributed import Client

from fleche import fleche, wrap_executor


@fleche(version="1", ignore=("log",))
def cube(x, log):
    Path(log, f"{x}-{os.getpid()}-{os.urandom(4).hex()}").touch()
    return x**3


if __name__ == "__main__":
    address, log, sweep = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    with Client(address) as client, wrap_executor(client.get_executor(pure=False)) as pool:
        results = list(pool.map(cube, sweep, [log] * len(sweep)))
    print(json.dumps({
        "results": results,
        "stored": [cube.contains(x, log) for x in sweep],  # under the keys made here
        "workers": sorted({p.name.split("-")[1] for p in Path(log).iterdir()}),
        "pid": str(os.getpid()),
        "direct": [cube(x, log) for x in sweep],
    }))
"""


def run_script(text: str, tmp_path: Path, *args: str) -> dict:
    """What a script of ``text`` run as ``__main__`` with ``args`` prints (as JSON)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLECHE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "user-config")  # no user configuration
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # fleche, not the script
    done = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_function_of_a_main_script_is_sent_by_value(client, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    address = client.scheduler.address
    report = run_script(SCRIPT, tmp_path, address, str(log), json.dumps(SWEEP))
    assert report["results"] == report["direct"] == [x**3 for x in SWEEP]
    assert all(report["stored"])
    assert computed(log) == sorted(set(SWEEP))  # the direct calls were all hits
    assert report["pid"] not in report["workers"]
    assert (tmp_path / ".fleche" / "calls.db").exists()  # the script's default store


COUNTED = """
import json
import sys

from distributed import Client

import fleche.wrapper as wrapper
from fleche import fleche, wrap_executor

pickled = []
by_value = wrapper.reduce_function
wrapper.reduce_function = lambda function: pickled.append(1) or by_value(function)


@fleche
def double(x):
    return 2 * x


if __name__ == "__main__":
    with Client(sys.argv[1]) as client, wrap_executor(client.get_executor(pure=False)) as pool:
        futures = [pool.submit(double, x) for x in range(5)]
        results = [f.result() for f in futures]
    print(json.dumps({"results": results, "pickled": len(pickled)}))
"""


def test_a_function_sent_by_value_is_pickled_once_per_task(client, tmp_path):
    # Dask pickles a task twice when its stream names __main__; the function goes pickled already.
    report = run_script(COUNTED, tmp_path, client.scheduler.address)
    assert report == {"results": [0, 2, 4, 6, 8], "pickled": 5}
