"""fleche: a content-addressed call/value provenance store for scientific Python.

Decorate a function with :func:`fleche`; each call is stored once (its
values under the digests of their content, the call as a small record of
digests and metadata), found again by its arguments, queried by templates,
and any stored object is named by a short digest prefix.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import remote  # noqa: E402, F401  (registers type = "ssh" for fleche.toml)
from .caches import (
    Cache,
    CacheBase,
    CachePool,
    CacheStack,
    FilteredCache,
    ReadOnlyCache,
    RefreshingCache,
    SizeLimitedCache,
)
from .call import Call, DigestedCall, Exactly, Ignored, LazyCall, PreparedCall, QueryCall, Required
from .config import from_config, open_cache, to_config
from .digest import Digest, digest
from .errors import (
    AmbiguousDigestError,
    CacheWarning,
    ConfigError,
    CorruptEntryWarning,
    FlecheError,
    FlecheWarning,
    Indigestible,
    ReadOnlyError,
    SaveError,
)
from .executor import wrap_executor
from .query import QueryIterator
from .state import active_cache, cache, meta, project, tags
from .wrapper import CachedFunction, fleche


def D(prefix: str) -> Digest:
    """A (short) digest typed by hand; passed as an argument it stands for its value."""
    return Digest(prefix)


__all__ = [
    "AmbiguousDigestError",
    "Cache",
    "CacheBase",
    "CachePool",
    "CacheStack",
    "CacheWarning",
    "CachedFunction",
    "Call",
    "ConfigError",
    "CorruptEntryWarning",
    "D",
    "Digest",
    "DigestedCall",
    "Exactly",
    "FilteredCache",
    "FlecheError",
    "FlecheWarning",
    "Ignored",
    "Indigestible",
    "LazyCall",
    "PreparedCall",
    "QueryCall",
    "QueryIterator",
    "ReadOnlyCache",
    "ReadOnlyError",
    "RefreshingCache",
    "Required",
    "SaveError",
    "SizeLimitedCache",
    "__version__",
    "active_cache",
    "cache",
    "digest",
    "fleche",
    "from_config",
    "meta",
    "open_cache",
    "project",
    "tags",
    "to_config",
    "wrap_executor",
]
