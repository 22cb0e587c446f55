"""Many hosts, one store, one computation per call: Dask workers on two hosts sharing a store.

The hosts are network namespaces this test makes (:mod:`tests.multihost.network`):
a store host running PostgreSQL (calls and leases) and SeaweedFS (values),
and two worker hosts, ``worker-a`` (with the Dask scheduler and the driver)
and ``worker-b``, each under a host name of its own.  A sweep with
duplicates computes each distinct call once across both hosts; then
``worker-b`` is killed while it holds leases, and ``worker-a`` finishes its
calls once those leases expire.  Everything made is removed at the end,
pass or fail.  Needs root; skips with the reason otherwise.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="Dask distributed is not installed")
pytest.importorskip("obstore", reason="obstore is not installed (pip install 'fleche[s3]')")
pytest.importorskip("psycopg", reason="psycopg is not installed")

from .multihost import network, servers  # noqa: E402

pytestmark = pytest.mark.timeout(170)

ROOT = Path(__file__).resolve().parents[1]
#: The lease duration of the workers (seconds): a killed host's leases lapse this long after.
LEASE_SECONDS = 6


#: Variables of this environment kept from the hosts: other S3 credentials and
#: servers, and proxies (their traffic stays between the test's addresses).
_FOREIGN = re.compile(r"AWS_.*|(?i:(http|https|all)_proxy)")


class Hosts:
    """The running hosts, and the driver of a sweep on ``worker-a``."""

    def __init__(self, net: network.Network, sweep: dict, env: dict, root: Path) -> None:
        self.net, self.sweep, self.env, self.root = net, sweep, env, root

    def drive(self, run: str, calls: list[int], pause: float, kill_on: str | None = None) -> dict:
        """Run a sweep; kill host ``kill_on`` once it computes; the driver's last message.

        The time of the kill goes into the message as ``killed_at``.
        """
        sweep = {**self.sweep, "run": run, "calls": calls, "pause": pause, "kill_on": kill_on}
        sweep.update(survivor="worker-a", held=2)  # as many as worker-b has threads
        argv = self.net.command("worker-a", [sys.executable, "-m", "tests.multihost.driver"])
        with open(self.root / f"driver-{run}.log", "ab") as log:
            driver = subprocess.Popen(
                [*argv, json.dumps(sweep)],
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                env=self.env,
            )
        killed_at = None
        try:
            for message in _messages(driver, time.monotonic() + 120):
                if message.get("event") == "kill":
                    killed_at = time.time()
                    self.net.kill(kill_on)
                elif "results" in message:
                    return {**message, "killed_at": killed_at}
        finally:
            driver.kill()
            driver.wait()
        raise AssertionError(f"the driver ended without results\n{self.logs()}")

    def logs(self, lines: int = 15) -> str:
        """The last ``lines`` of each log of the hosts' programs (gone with the hosts)."""
        tails = []
        for log in sorted(self.root.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append("\n".join([f"--- {log.name}", *tail]))
        return "\n".join(tails)


def _messages(process: subprocess.Popen, deadline: float):
    """The JSON lines ``process`` prints, until it ends or ``deadline`` (monotonic) passes."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = process.stdout.readline()
            if not line:
                return
            yield json.loads(line)
    raise AssertionError("the driver did not finish in time")


@pytest.fixture(scope="module")
def hosts():
    reason = network.why_not() or servers.why_not()
    if reason:
        pytest.skip(reason)
    net = network.Network()
    root = Path(tempfile.mkdtemp(prefix="fleche-multihost-"))
    root.chmod(0o711)  # the postgres user reaches its directory inside
    try:
        try:
            store = net.host("store")
        except subprocess.CalledProcessError as err:
            pytest.skip(f"cannot make network namespaces here: {err.stderr.strip()}")
        yield _start(net, store, root)
    finally:
        net.close()
        shutil.rmtree(root, ignore_errors=True)


def _start(net: network.Network, store: str, root: Path) -> Hosts:
    workers = {name: net.host(name) for name in ("worker-a", "worker-b")}
    calls = servers.start_postgres(net, "store", store, root)
    endpoint = servers.start_seaweedfs(net, "store", store, root)
    markers = calls.replace("+psycopg", "")
    env = {
        **{name: value for name, value in os.environ.items() if not _FOREIGN.match(name)},
        **servers.S3_KEYS,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "FLECHE_LEASE_SECONDS": str(LEASE_SECONDS),
        "MULTIHOST_MARKERS": markers,
        "DASK_TEMPORARY_DIRECTORY": str(root),  # scratch space in the test's directory
    }
    scheduler = servers.start_dask(net, workers, root, env)
    sweep = {
        "db": calls,
        "markers": markers,
        "url": f"s3://{servers.BUCKET}/values",
        "endpoint": endpoint,
        "scheduler": scheduler,
        "workers": len(workers),
    }
    return Hosts(net, sweep, env, root)


def test_a_sweep_over_two_hosts_computes_each_distinct_call_once(hosts, record_property):
    calls = [i // 2 for i in range(200)]  # 100 distinct calls, each twice
    random.Random(14).shuffle(calls)
    out = hosts.drive("sweep", calls, pause=0.1)
    record_property("sweep_seconds", round(out["seconds"], 2))
    print(f"a sweep of {len(calls)} calls over two hosts: {out['seconds']:.2f} s")
    assert out["results"] == [x * x for x in out["calls"]] and sorted(out["calls"]) == sorted(calls)
    assert out["missing"] == []  # all stored
    computed = collections.Counter(x for x, *_ in out["markers"])
    assert computed == collections.Counter(set(calls))  # each distinct call once
    assert all(finished is not None for *_, finished in out["markers"])
    assert {host for _, host, *_ in out["markers"]} == {"worker-a", "worker-b"}


def test_a_killed_host_s_calls_are_finished_by_the_other_once_its_leases_expire(hosts):
    # worker-b computes calls 0 and 1 while worker-a waits for their leases, and dies.
    calls = [0, 1, 2, 3, 4, 5, 2, 3, 4, 5]
    out = hosts.drive("kill", calls, pause=3.0, kill_on="worker-b")
    killed_at = out["killed_at"]
    print(f"a sweep of {len(calls)} calls, one host killed: {out['seconds']:.2f} s")
    assert killed_at is not None
    assert out["results"] == [x * x for x in out["calls"]] and out["missing"] == []
    by_call = collections.defaultdict(list)
    for x, host, _, started, finished in out["markers"]:
        by_call[x].append((started, host, finished))
        end = "-" if finished is None else f"{finished - killed_at:.1f}"
        print(f"call {x} on {host}: from {started - killed_at:.1f} to {end} s after the kill")
    assert set(by_call) == set(calls)
    cut_short = []
    for x, computations in by_call.items():
        computations.sort()
        assert any(finished is not None for *_, finished in computations), x
        survivors = [c for c in computations if c[1] == "worker-a"]
        assert len(survivors) <= 1, f"{x} computed twice on worker-a"
        if len(computations) > 1:  # only what the killed host left undone is done again
            (started, host, finished), again = computations
            assert host == "worker-b" and started < killed_at and again[1] == "worker-a"
            if finished is None:
                cut_short.append((x, again[0]))
    assert {0, 1} <= {x for x, _ in cut_short}, "worker-b was killed computing them"
    delays = ", ".join(f"{retaken - killed_at:.1f}" for _, retaken in cut_short)
    print(f"calls cut short by the kill, taken over after (s): {delays}")
    for x, retaken in cut_short:  # its lease held until it lapsed (renewed a third of it apart)
        assert retaken > killed_at + LEASE_SECONDS / 2, (x, retaken - killed_at)
