"""``fleche config`` (which store, and why) and ``fleche demo``."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import ENV_CACHE, embedded_default, load_configuration, to_config
from ..errors import ConfigError
from ..state import cache as activate
from .context import BadInput, Commands, Context

__all__ = ["add_commands"]


def config(ctx: Context) -> int:
    """The configuration files in force, the cache names they define, and which store is active and why."""
    configuration = load_configuration()
    if ctx.args.cache is not None:
        why = f"named by --cache {ctx.args.cache!r}"
    elif os.environ.get(ENV_CACHE):
        why = f"named by the environment variable {ENV_CACHE}={os.environ[ENV_CACHE]!r}"
    elif configuration.default is not None:
        spec, path = configuration.default
        why = f"the [default] cache {spec!r} of {path}"
    else:
        why = f"nothing configured: the embedded default store in {Path.cwd() / '.fleche'}"
    try:
        cache = ctx.cache
    except BadInput as err:  # not created yet: saying so creates nothing
        cache, table = None, {"error": str(err)}
    else:
        try:
            table = to_config(cache)
        except ConfigError as err:
            table = {"error": str(err)}
    names = {
        name: str(configuration.caches[name][1]) if name in configuration.caches else "reserved"
        for name in configuration.names()
    }
    data = {
        "files": [str(f) for f in configuration.files],
        "active": {
            "why": why,
            "cache": repr(cache),
            "table": table,
            "persistent": cache is not None and cache.persistent,
            "read_only": cache is not None and cache.read_only,
        },
        "names": names,
    }

    active = data["active"]

    def render() -> None:
        files = data["files"] or [
            "none (no fleche.toml here, above, or in the user configuration directory)"
        ]
        ctx.say("configuration files (closest first):")
        for file in files:
            ctx.say(f"  {file}")
        ctx.say(f"active cache: {table if 'error' not in table else data['active']['cache']}")
        ctx.say(f"  why: {why}")
        ctx.say(f"  persistent: {active['persistent']}, read-only: {active['read_only']}")
        ctx.say("cache names: " + ", ".join(f"{n} ({where})" for n, where in names.items()))

    ctx.emit(data, render)
    return 0


def demo(ctx: Context) -> int:
    """Run the demo workflow twice on the embedded store here (or on --cache): computed, then cached."""
    from .. import demo as workflow

    store = ctx.cache if ctx.args.cache is not None else embedded_default()
    with activate(store):
        workflow.main(console=ctx.console)
    return 0


def add_commands(commands: Commands) -> None:
    """Register ``config`` and ``demo``."""
    p = commands.add_parser(
        "config", help="which store is active, and why", description=config.__doc__
    )
    p.set_defaults(run=config)
    p = commands.add_parser("demo", help="a small workflow, run twice", description=demo.__doc__)
    p.set_defaults(run=demo, create=True)
