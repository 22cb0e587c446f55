"""``fleche remote --serve``: answer a remote :class:`~fleche.remote.SshCache` on stdin/stdout.

Started by the client through ``ssh``; a person rarely runs it.  The
protocol owns standard output: anything else the process prints goes to
standard error instead.
"""

from __future__ import annotations

import os
import sys

from ..caches import ReadOnlyCache
from ..remote import serve
from .context import BadInput, Commands, Context

__all__ = ["add_commands"]


def remote(ctx: Context) -> int:
    """Serve the store --cache names (the default store without one) over stdin and stdout."""
    if not ctx.args.serve:
        raise BadInput("fleche remote only serves (it is started by SshCache): add --serve")
    cache = ctx.cache
    if ctx.args.read_only:
        cache = ReadOnlyCache(cache)
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot corrupt a frame
    sys.stdout = sys.stderr
    with protocol:
        serve(sys.stdin.buffer, protocol, cache, cache_name=ctx.args.cache)
    return 0


def add_commands(commands: Commands) -> None:
    """Register ``remote``."""
    p = commands.add_parser(
        "remote", help="serve a store to an SshCache over stdin/stdout", description=remote.__doc__
    )
    p.add_argument("--serve", action="store_true", help="answer the protocol on stdin/stdout")
    p.add_argument("--read-only", action="store_true", help="refuse every write")
    p.set_defaults(run=remote, create=True)
