"""A store on another machine, used over one SSH connection: :class:`SshCache`.

``SshCache("cluster")`` starts ``ssh cluster python3 -m fleche remote --serve``
once and keeps it: every cache operation is a request over that
connection's standard input and output, answered by :func:`serve` on the
other side.  Queries arrive a page at a time as they are iterated, values
move in 1 MiB frames, a dropped connection is re-opened once before
:class:`RemoteConnectionError`, and a read-only remote refuses writes here,
without a round trip.  The two ends compare their fleche and protocol
versions when they connect.

:class:`RemoteCache` is the same client over any pair of byte streams
(its :meth:`~RemoteCache.connect` says how to reach the server); the wire
format is in :mod:`fleche._remote_protocol`, the server in
:mod:`fleche._remote_server`.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from ._remote_client import Link, RemoteCache, RemoteConnectionError, RemoteVersionWarning
from ._remote_server import serve
from .errors import ConfigError

__all__ = [
    "Link",
    "RemoteCache",
    "RemoteConnectionError",
    "RemoteVersionWarning",
    "SshCache",
    "serve",
]


@dataclasses.dataclass(frozen=True)
class SshCache(RemoteCache):
    """The store ``cache_name`` (the remote's default without one) on ``host``, over SSH.

    Parameters
    ----------
    host
        What ``ssh`` connects to: a host name, ``user@host`` or an alias of ``~/.ssh/config``.
    cache_name
        A cache name (or path, or URL) as the remote's ``fleche --cache`` takes it.
    python
        The remote Python interpreter with fleche installed.
    ssh_options
        Extra ``ssh`` arguments, e.g. ``("-p", "2222", "-i", "~/.ssh/key")``; a
        string is split like a shell would.
    setup_commands
        Shell commands run on the remote before the server, e.g.
        ``("source ~/venv/bin/activate",)`` or ``("export PYTHONPATH=/src",)``.
    workdir
        The remote directory the server runs in (where its ``fleche.toml`` is found).
    page_size
        How many call records a query fetches per round trip.
    """

    host: str
    cache_name: str | None = None
    python: str = "python3"
    ssh_options: Sequence[str] = ()
    setup_commands: Sequence[str] = ()
    workdir: str | None = None
    page_size: int = 256

    def __post_init__(self) -> None:
        options = self.ssh_options
        options = tuple(shlex.split(options) if isinstance(options, str) else options)
        object.__setattr__(self, "ssh_options", options)
        commands = self.setup_commands
        object.__setattr__(
            self, "setup_commands", (commands,) if isinstance(commands, str) else tuple(commands)
        )
        if self.page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {self.page_size}")

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return (_rebuild, (fields,))

    def __str__(self) -> str:
        return f"SshCache({self.host}:{self.cache_name or 'default'})"

    def to_config(self) -> dict[str, Any]:
        """The ``fleche.toml`` table of this cache: ``type = "ssh"`` and the settings not at their default."""
        table: dict[str, Any] = {"type": "ssh"}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "host" or value != field.default:
                table[field.name] = list(value) if isinstance(value, tuple) else value
        return table

    def command(self) -> list[str]:
        """The ``ssh`` command line that starts the server."""
        serve = ["-m", "fleche", "remote", "--serve"]
        if self.cache_name is not None:
            serve += ["--cache", self.cache_name]
        steps = [*self.setup_commands]
        if self.workdir is not None:
            steps.append(f"cd {_remote_path(self.workdir)}")
        steps.append(f"exec {_remote_path(self.python)} {shlex.join(serve)}")
        return [
            "ssh",
            *self.ssh_options,
            "-T",
            "-o",
            "BatchMode=yes",
            self.host,
            " && ".join(steps),
        ]

    def connect(self) -> Link:
        """Start ``ssh host python -m fleche remote --serve`` (see :meth:`command`)."""
        errors = tempfile.TemporaryFile()
        argv = self.command()
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                start_new_session=True,  # Ctrl-C in the user's session does not cut the link
            )
        except OSError as err:
            errors.close()
            raise RemoteConnectionError(f"could not run ssh for {self}: {err}") from err

        def close() -> None:
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()  # type: ignore[union-attr]
                except OSError:
                    pass
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            errors.close()

        def diagnose() -> str:
            errors.seek(0)
            return errors.read()[-2000:].decode(errors="replace")

        return Link(
            process.stdout,
            process.stdin,
            close,
            diagnose,  # type: ignore[arg-type]
            {"ssh_pid": process.pid, "ssh_command": argv},
        )


def _remote_path(path: str) -> str:
    """``path`` quoted for the remote shell, a leading ``~/`` left for it to expand."""
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


def _rebuild(fields: dict[str, Any]) -> SshCache:
    return SshCache(**fields)


def from_table(table: Mapping[str, Any], base: Any) -> SshCache:
    """An SshCache from a ``type = "ssh"`` table (``read_only`` is applied by the caller).

    :data:`fleche.registry.CACHE_TYPES` names it: ``import fleche`` need not import this module.
    """
    settings = {f.name for f in dataclasses.fields(SshCache)}
    fields = {}
    for key, value in table.items():
        if key in ("type", "read_only"):
            continue
        if key not in settings:
            raise ConfigError(
                f"an ssh cache has no setting {key!r}; settings: {', '.join(sorted(settings))}",
                key=key,
            )
        fields[key] = tuple(value) if isinstance(value, list) else value
    if "host" not in fields:
        raise ConfigError("an ssh cache needs a 'host'", key="host")
    return SshCache(**fields)
