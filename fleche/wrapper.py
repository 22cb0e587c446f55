"""The ``@fleche`` decorator: a function whose calls are cached and queryable.

Everything that depends only on the function is decided once, when it is
decorated: the identity prefix of its keys, how its arguments bind, which
are ignored.  A hit then costs one pass over the arguments, one record read
and one value read.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, ParamSpec, TypeVar, overload

from ._code_deps import code_digest
from .caches import Cache
from .call import (
    UNSTORED,
    Ignored,
    Required,
    Unstored,
    argument_digests,
    function_prefix,
    key_of,
)
from .digest import DIGEST_LENGTH, Digest, digest
from .errors import CacheWarning, Indigestible, warn
from .expiry import EXPIRY, Duration, seconds
from .isolation import isolating
from .metadata import Metadata
from .methods import bind_descriptor, unwrap_method
from .profile import Binder, FunctionProfile, marked_names
from .shipping import reduce_function
from .single_flight import compute_once
from .state import active_cache, resolve
from .wrapper_helpers import FunctionHelpers
from .wrapper_run import Computation, compute

__all__ = [
    "CachedFunction",
    "Ignored",
    "Required",
    "fleche",
    "install_awaitable_variant",
    "process_ignore_required_args",
]

P = ParamSpec("P")
R = TypeVar("R")


class Keyed(NamedTuple):
    """A call's arguments by name, their raw digests and its lookup key."""

    arguments: dict[str, Any]
    digests: dict[str, bytes]
    key: Digest


_new_tuple = tuple.__new__

#: What :meth:`CachedFunction._stored_result` returns on a miss (``None`` is a result).
MISS = object()

_AWAITABLE: list[type] = []  # what ``CachedFunction(async_function)`` builds


def install_awaitable_variant(variant: type) -> None:
    """Make ``@fleche`` on an ``async def`` build ``variant`` (it builds on this module: it installs itself)."""
    _AWAITABLE[:] = [variant]


def process_ignore_required_args(
    func: Callable[..., Any], ignore: Iterable[str] | None, require: Iterable[str] | None
) -> FunctionProfile:
    """The profile of ``func`` with ``ignore``/``require`` and its annotations applied.

    The 0.22 name for :meth:`FunctionProfile.of <fleche.profile.FunctionProfile.of>`
    with only those two options.
    """
    return FunctionProfile.of(func, ignore=ignore, require=require)


class CachedFunction(FunctionHelpers[P, R]):
    """A function whose calls are stored in the active cache (see :func:`fleche`)."""

    def __new__(
        cls, func: Callable[P, R] | None = None, *args: Any, **options: Any
    ) -> CachedFunction[P, R]:
        # An ``async def`` gets the awaitable variant (fleche/asynchronous.py installs it).
        if (
            cls is CachedFunction
            and func is not None
            and inspect.iscoroutinefunction(unwrap_method(func)[0])
        ):
            cls = _AWAITABLE[0]
        return super().__new__(cls)

    def __init__(
        self,
        func: Callable[P, R],
        *,
        version: str | None = None,
        ignore: Iterable[str] | None = None,
        require: Iterable[str] | None = None,
        hash_code: bool = False,
        meta: Iterable[Metadata] = (),
        hash_module: bool = True,
        hash_version: bool = True,
        isolate: bool = False,
        cache: Cache | str | None = None,
        ttl: Duration | None = None,
        unstored: Iterable[str] = (),
    ) -> None:
        func, self._method_kind = unwrap_method(func)  # @fleche() above @classmethod/@staticmethod
        functools.update_wrapper(self, func)
        self.func = func
        #: What runs on a miss: the function, in its own directory if ``isolate``.
        self._body = isolating(func) if isolate else func
        # The code digest is taken at first use (``code`` below), not here.
        profile = FunctionProfile.of(func, version=version, ignore=ignore, require=require)
        self.version = profile.version
        self.ignored = profile.ignored
        self.required = profile.required
        self.unstored = marked_names(profile.signature, unstored, Unstored, "unstored")
        both = self.ignored & self.unstored
        if both:
            raise ValueError(f"arguments {sorted(both)} cannot be both ignored and unstored")
        self.name = profile.qualname
        self.module = profile.module
        self._hash_code = hash_code
        self.unkeyed = frozenset(
            field
            for field, keep in (("module", hash_module), ("version", hash_version))
            if not keep
        )
        self.meta = tuple(meta)
        self._bind = Binder(profile.signature, self.ignored)
        self._cache = None if cache is None else resolve(cache)
        self.ttl = None if ttl is None else seconds(ttl, "ttl")
        # What rides in every record: the expiry (the cache stamps its absolute
        # time) and which argument values it does not keep.
        self._record_metadata = {} if self.ttl is None else {EXPIRY: {"ttl": self.ttl}}
        if self.unstored:
            self._record_metadata[UNSTORED] = {"arguments": sorted(self.unstored)}

    @functools.cached_property
    def code(self) -> Digest | None:
        """The code digest (``hash_code=True``): taken at the first use, once the module is loaded."""
        return code_digest(self.func) if self._hash_code else None

    @functools.cached_property
    def prefix(self) -> bytes:
        """The raw digest of the function's identity, the first part of every key."""
        return function_prefix(self.name, self.module, self.version, self.code, self.unkeyed)

    # -- the call ------------------------------------------------------------

    @property
    def cache(self) -> Cache:
        """The cache this function uses now (its own, else the active one)."""
        return active_cache() if self._cache is None else self._cache

    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        cache = self._cache
        if cache is None:  # not ``or``: a cache has a length, and its truth is not asked here
            cache = active_cache()
        # _key and _stored_result written out: two calls fewer on every hit and miss.
        try:
            keyed = self._keyed(cache, args, kwargs)
        except Indigestible as err:
            self._indigestible(err)
            return self.func(*args, **kwargs)
        key = keyed.key
        try:
            return cache.load_result(key)
        except KeyError:
            pass
        except Exception as err:
            self._unreadable(key, err)
        # Concurrent misses of this call (threads, processes) compute it once: fleche/single_flight.py.
        return compute_once(
            cache,
            key,
            lambda: cache.load_result(key),
            functools.partial(compute, self, cache, keyed, args, kwargs),
        )

    def _key(self, cache: Cache, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Keyed | None:
        """Bound arguments, their digests and the lookup key; ``None`` to run uncached."""
        try:
            return self._keyed(cache, args, kwargs)
        except Indigestible as err:
            self._indigestible(err)
            return None

    def _indigestible(self, err: Indigestible) -> None:
        """An argument that cannot be digested costs a warning, not the call, unless it is required."""
        if self.required and any(err.path.startswith(f"arguments[{n!r}]") for n in self.required):
            raise err
        warn(f"{err}; calling {self.name} without the cache", CacheWarning)

    def _keyed(self, cache: Cache, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Keyed:
        arguments = self._bind(args, kwargs)
        try:
            digests = argument_digests(arguments)
        except ValueError:  # a short digest cannot be digested: expand it (rare path)
            for name, value in arguments.items():
                if type(value) is Digest and len(value) != DIGEST_LENGTH:
                    arguments[name] = cache.expand(value)
            digests = argument_digests(arguments)
        # tuple.__new__: the namedtuple's own __new__ is a Python function, one call more per call
        return _new_tuple(Keyed, (arguments, digests, key_of(self.prefix, digests)))

    def _stored_result(self, cache: Cache, key: Digest) -> Any:
        """The stored result, or ``MISS``; an unreadable entry is a miss with a warning."""
        try:
            return cache.load_result(key)
        except KeyError:
            return MISS
        except Exception as err:
            self._unreadable(key, err)
            return MISS

    def _unreadable(self, key: Digest, err: Exception) -> None:
        warn(
            f"fleche could not read call {key[:12]} of {self.name} "
            f"({type(err).__name__}: {err}); computing it",
            CacheWarning,
        )

    def _compute(
        self, cache: Cache, keyed: Keyed, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        """Run the body and store the call, a storage failure costing a warning (never the result)."""
        return compute(self, cache, keyed, args, kwargs)

    def _computation(
        self, cache: Cache, keyed: Keyed, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Computation:
        """Around one run of the body (sync or async): see :class:`~fleche.wrapper_run.Computation`."""
        return Computation(self, cache, keyed, args, kwargs)

    def __digest__(self) -> Digest:
        # A decorated function digests like the plain one (hash_code, digests of functions).
        return digest(self.func)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # A method: bind the instance (or the class) like a function does (fleche/methods.py).
        return bind_descriptor(self, self._method_kind, instance, owner)

    def __reduce__(self) -> str | tuple[Any, ...]:
        return reduce_function(self)  # by reference where it imports, else by value

    def __repr__(self) -> str:
        return f"<fleche cached function {self.module}.{self.name}>"


@overload
def fleche(_func: Callable[P, R], /) -> CachedFunction[P, R]: ...
@overload
def fleche(
    _func: None = None,
    *,
    version: str | None = None,
    meta: Iterable[Metadata] = (),
    hash_version: bool = True,
    hash_module: bool = True,
    hash_code: bool = False,
    require: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    isolate: bool = False,
    cache: Cache | str | None = None,
    ttl: Duration | None = None,
    unstored: Iterable[str] = (),
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...
def fleche(_func: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Cache the calls of a function persistently, by the content of its arguments.

    Parameters
    ----------
    version
        Part of every key: change it to invalidate the calls of older code.
    ignore, require
        Parameter names left out of the key (also ``Ignored[T]`` annotations),
        and names that must be part of it (``Required[T]``): an argument that
        cannot be digested then raises instead of running uncached.
    hash_code
        Make the function's code (and captured state) part of the key.
    meta
        Metadata recorders added for this function's calls.
    hash_module, hash_version
        Set to ``False`` to leave the module or the version out of the key
        (a function moved between modules keeps its calls).
    isolate
        Run the body in a fresh temporary working directory on every
        computation (removed afterwards); see :mod:`fleche.isolation`.
    cache
        A cache (or name) this function always uses, instead of the active one.
    ttl
        Time to live of each stored call (seconds or a ``timedelta``): once
        expired it reads as a miss and is computed again; ``prune()`` removes
        it.  The expiry is written into the call record.
    unstored
        Parameter names (also ``Unstored[T]`` annotations) keyed by the digest
        of their value without copying the value into the store: for large
        inputs (a 500 MB array) that you keep anyway.  The record still names
        the digest, so queries by the value work; loading such an argument
        gives back its :class:`Digest` unless the value was stored by another
        call.

    Notes
    -----
    Methods: it decorates instance methods, classmethods and staticmethods
    (above or below ``@classmethod``/``@staticmethod``).  ``self`` is an
    argument like any other: a dataclass instance is keyed by its fields, a
    plain class instance by its class and state (``__getstate__()``); give
    the class a ``__digest__`` method to choose what counts, or pass
    ``ignore=("self",)`` (see :mod:`fleche.methods`).  The function identity
    is its ``__qualname__``, which includes the class.

    ``async def`` functions give an awaitable cached function; concurrent
    awaits of one call run its body once (see :mod:`fleche.asynchronous`).

    Notebooks and scripts: the identity is ``__module__`` (``"__main__"``)
    and ``__qualname__``, never an object id or a cell number, so a key
    survives kernel restarts and re-runs of a cell.  Two different functions
    of one name in one notebook share keys unless ``hash_code=True`` (or a
    ``version``) tells them apart.  Use :meth:`CachedFunction.explain` to
    see why a call misses.
    """
    if _func is None:
        return lambda f: CachedFunction(f, **options)
    return CachedFunction(_func, **options)
