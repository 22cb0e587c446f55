"""fleche: a content-addressed call/value provenance store for scientific Python.

Decorate a function with :func:`fleche`; each call is stored once (its
values under the digests of their content, the call as a small record of
digests and metadata), found again by its arguments, queried by templates,
and any stored object is named by a short digest prefix.
"""

from __future__ import annotations

from . import asynchronous, digest  # noqa: F401  (digest: the submodule, as in 0.22; asynchronous: @fleche on async def)
from ._version import __version__
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
from .call import (
    Call,
    DigestedCall,
    Exactly,
    Ignored,
    LazyCall,
    PreparedCall,
    QueryCall,
    Required,
    Unstored,
)
from .config import from_config, open_cache, to_config
from .digest import Digest
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
from .state import BoundWrapper, active_cache, cache, get_cache, get_metadata, meta, project, tags
from .wrapper import CachedFunction, fleche

_HEX = frozenset("0123456789abcdefABCDEF")


def D(value: object) -> Digest:
    """A digest: a non-empty hex string is taken as a (short) digest, anything else is digested.

    ``D("a3f9c1")`` passed as an argument stands for the stored value it
    names; ``D([1, 2])`` is ``digest([1, 2])``.  A hex string longer than a
    digest (such as a 64-character digest of the 0.22 release) is a
    ``ValueError``, not a value to digest.
    """
    if isinstance(value, str) and value and _HEX.issuperset(value):
        return Digest(value)
    return digest.digest(value)


__all__ = [
    "AmbiguousDigestError",
    "BoundWrapper",
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
    "Unstored",
    "__version__",
    "active_cache",
    "cache",
    "digest",
    "fleche",
    "from_config",
    "get_cache",
    "get_metadata",
    "meta",
    "open_cache",
    "project",
    "tags",
    "to_config",
    "wrap_executor",
]
