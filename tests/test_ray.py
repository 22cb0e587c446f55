"""wrap_executor over Ray tasks (fleche.executor_ray.RayExecutor): each call once, in the submitter's store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleche import cache, fleche, wrap_executor

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'fleche[ray]')")

from fleche.executor_ray import RayExecutor  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SWEEP = [i % 8 for i in range(20)]


@fleche(version="1", ignore=("log",))
def halve(x, log):
    Path(log, f"{x}-{os.getpid()}-{os.urandom(4).hex()}").touch()
    return x / 2


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray instance of two CPUs, its files in the test's directory."""
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    yield
    ray.shutdown()


def test_a_sweep_of_ray_tasks_computes_each_call_once(local_ray, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    with cache(str(tmp_path / "store")):
        with wrap_executor(RayExecutor()) as pool:
            results = list(pool.map(halve, SWEEP, [str(log)] * len(SWEEP)))
        assert results == [x / 2 for x in SWEEP]
        assert all(halve.contains(x, str(log)) for x in SWEEP)
    computed = sorted(int(path.name.split("-")[0]) for path in log.iterdir())
    assert computed == sorted(set(SWEEP))
    assert os.getpid() not in {int(path.name.split("-")[1]) for path in log.iterdir()}


def test_a_shut_down_ray_executor_takes_no_work(local_ray):
    pool = wrap_executor(RayExecutor(num_cpus=1))
    future = pool.submit(abs, -3)
    pool.shutdown(cancel_futures=False)
    assert future.result() == 3
    with pytest.raises(RuntimeError):
        pool.submit(abs, -1)
