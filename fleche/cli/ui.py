"""``fleche ui``: serve a web page to browse the store (see :mod:`fleche.ui`).

The first line printed is the URL served, so a script can read it; the
server binds 127.0.0.1 unless ``--host`` says otherwise, picks a free port
with ``--port 0``, and only reads unless ``--allow-writes``.
"""

from __future__ import annotations

import sys
import threading
import webbrowser

from .context import Commands, Context

__all__ = ["add_commands"]


def ui(ctx: Context) -> int:
    """Serve the store --cache names (the default store without one) to a web browser."""
    from werkzeug.serving import make_server

    from ..ui import create_app

    args = ctx.args
    app = create_app(ctx.cache, allow_writes=args.allow_writes, host=args.host)
    server = make_server(args.host, args.port, app, threaded=True)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{server.server_port}/"
    print(url, flush=True)
    mode = "read and write (--allow-writes)" if args.allow_writes else "read-only"
    print(f"fleche ui: serving {mode}; press Ctrl+C to stop", file=sys.stderr, flush=True)
    if not args.no_open:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def add_commands(commands: Commands) -> None:
    """Register ``ui``."""
    p = commands.add_parser("ui", help="browse the store in a web browser", description=ui.__doc__)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port to serve on; 0 picks a free one (default: 8765)",
    )
    p.add_argument("--no-open", action="store_true", help="do not open a web browser")
    p.add_argument(
        "--allow-writes", action="store_true", help="allow evicting calls from the pages"
    )
    p.set_defaults(run=ui)
