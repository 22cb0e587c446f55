"""Hosts made of network namespaces on this machine, joined by a private bridge.

The bridge lives in the first namespace and each other one reaches it
through a veth pair made inside the namespaces, so the machine's own
network is never touched and traffic stays between the test's own
addresses.  A program runs on a host with a host name of its own
(``unshare --uts``).  Everything is named ``flmh<pid>-...`` and removed by
:meth:`Network.close`, pass or fail: servers that keep state outside their
directory are stopped first (:attr:`Network.stoppers`), every other process
is killed (SIGKILL) by the pids its namespace holds, then the namespace is
deleted, which takes its links with it.  Namespaces left by a run that was itself
killed are removed by the next one.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

PREFIX = "flmh"


def ip(*args: str) -> str:
    """Run ``ip ARGS``; its output."""
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


def why_not() -> str | None:
    """Why hosts cannot be made here, or ``None``."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to make network namespaces"
    for tool, package in [("ip", "iproute2"), ("unshare", "util-linux"), ("runuser", "util-linux")]:
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian package {package})"
    return None


def free_subnet() -> str:
    """``10.231.N``: a /24 that no address or route of this machine overlaps."""
    used = []
    for line in (ip("-o", "addr") + ip("route")).splitlines():
        for word in re.findall(r"\d+\.\d+\.\d+\.\d+(?:/\d+)?", line):
            used.append(ipaddress.ip_network(word, strict=False))
    for n in random.sample(range(1, 255), 254):
        subnet = ipaddress.ip_network(f"10.231.{n}.0/24")
        if not any(subnet.overlaps(other) for other in used):
            return f"10.231.{n}"
    raise RuntimeError("no free /24 in 10.231.0.0/16")


def pids_in(namespace: str) -> list[int]:
    try:
        return [int(pid) for pid in ip("netns", "pids", namespace).split()]
    except subprocess.CalledProcessError:
        return []  # no such namespace (any more)


def remove_namespace(namespace: str) -> None:
    """Kill every process of ``namespace`` (SIGKILL, as in a power cut), then delete it."""
    pids = pids_in(namespace)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        pids = pids_in(namespace)
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


def remove_stale() -> None:
    """Remove the namespaces of earlier runs whose test process is gone."""
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        found = re.fullmatch(PREFIX + r"(\d+)-.*", name)
        if found and not Path(f"/proc/{found.group(1)}").exists():
            remove_namespace(name)


class Network:
    """Hosts on one private /24; the first host made holds the bridge (address ``.1``)."""

    def __init__(self) -> None:
        remove_stale()
        self.subnet = free_subnet()
        self.tag = f"{PREFIX}{os.getpid()}"
        self.namespaces: dict[str, str] = {}  # role -> namespace
        self.children: list[subprocess.Popen] = []
        #: Commands that stop a server cleanly, run (in their hosts) before the hosts go.
        self.stoppers: list[list[str]] = []

    def host(self, role: str) -> str:
        """A new host (namespace) joined to the bridge; its address."""
        namespace = f"{self.tag}-{role}"
        ip("netns", "add", namespace)
        self.namespaces[role] = namespace
        ip("-n", namespace, "link", "set", "lo", "up")
        address = f"{self.subnet}.{len(self.namespaces)}"
        if len(self.namespaces) == 1:
            # A bridge takes the lowest address of its ports unless given one: when that
            # port's host died, its address would change under the others' ARP caches.
            mac = "02:" + ":".join(f"{byte:02x}" for byte in os.urandom(5))
            ip("-n", namespace, "link", "add", "br0", "address", mac, "type", "bridge")
            ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "br0")
            ip("-n", namespace, "link", "set", "br0", "up")
            return address
        bridge = next(iter(self.namespaces.values()))
        ip("-n", bridge, "link", "add", f"v-{role}", "type", "veth", "peer", "name", "eth0")
        ip("-n", bridge, "link", "set", "eth0", "netns", namespace)
        ip("-n", bridge, "link", "set", f"v-{role}", "master", "br0", "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        return address

    def command(self, role: str, argv: list[str], hostname: str | None = None) -> list[str]:
        """``argv`` as run on host ``role``, under ``hostname`` if given."""
        inside = ["ip", "netns", "exec", self.namespaces[role]]
        if hostname is None:
            return inside + argv
        return (
            inside + ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname] + argv
        )

    def start(
        self, role: str, argv: list[str], log: Path, hostname: str | None = None, **popen
    ) -> subprocess.Popen:
        """Start ``argv`` on host ``role`` in a session of its own, output to ``log``."""
        with open(log, "ab") as out:
            child = subprocess.Popen(
                self.command(role, argv, hostname),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **popen,
            )
        self.children.append(child)
        return child

    def wait_listening(self, role: str, address: str, port: int, seconds: float = 60.0) -> None:
        """Until something accepts connections at ``address:port``, seen from host ``role``."""
        probe = (
            "import socket, sys, time\n"
            f"deadline = time.monotonic() + {seconds}\n"
            "while time.monotonic() < deadline:\n"
            "    try:\n"
            f"        socket.create_connection(({address!r}, {port}), timeout=1).close()\n"
            "        sys.exit(0)\n"
            "    except OSError:\n"
            "        time.sleep(0.1)\n"
            "sys.exit(1)\n"
        )
        argv = self.command(role, ["python3", "-c", probe])
        subprocess.run(argv, check=True, timeout=seconds + 10)

    def kill(self, role: str) -> None:
        """Kill host ``role`` at once: SIGKILL to every process in it, then delete it."""
        remove_namespace(self.namespaces.pop(role))
        for child in self.children:
            child.poll()  # reaped: its pid is free, as on a host that died

    def close(self) -> None:
        """Stop every process and remove every host made here."""
        for argv in self.stoppers:
            subprocess.run(argv, capture_output=True, timeout=30)
        for role in reversed(list(self.namespaces)):  # the bridge's host last
            remove_namespace(self.namespaces.pop(role))
        for child in self.children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=5)
