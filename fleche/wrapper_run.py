"""One run of a cached function's body, between the store's two steps of a miss.

A plain class rather than a generator-based context manager: entering and
leaving it are two calls, where ``contextlib.contextmanager`` makes six
(its object, its enter and exit, the generator's two steps, its helper),
on every miss (benchmarks/bench_call_path.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .caches.core import prepare_committed_here
from .call import DigestedCall
from .digest import Digest
from .metadata import record
from .state import active_metadata

if TYPE_CHECKING:
    from .caches import Cache

__all__ = ["Computation", "compute"]

_new_str = str.__new__
_new_object = object.__new__
_DIGESTS = itertools.repeat(Digest)


def compute(function: Any, cache: Cache, keyed: Any, args: tuple[Any, ...], kwargs: dict) -> Any:
    """Run the body of the cached ``function`` once and store the call; its result."""
    run = _new_object(Computation)  # the fields set here: one Python call less than __init__
    run.function, run.cache, run.keyed, run.args, run.kwargs = function, cache, keyed, args, kwargs
    with run:
        run.result = function._body(*run.args, **run.kwargs)
    return run.result


class Computation:
    """``with Computation(function, cache, keyed, args, kwargs) as run:`` around one run of the body.

    Entering stores the arguments and seals the key (a prepared call), so
    a crash leaves no half-written call, and starts the metadata
    recorders.  The body runs with :attr:`args` and :attr:`kwargs` (short
    digests expanded to their values) and sets :attr:`result`.  Leaving
    normally stores the result and the record; leaving by an exception
    abandons the prepared call.  A store step that fails costs a warning
    (``save_guarded``, handed the failure), never the result.  Sync and async
    bodies share it.
    """

    __slots__ = ("args", "cache", "function", "keyed", "kwargs", "prepared", "result", "stop")

    def __init__(
        self, function: Any, cache: Cache, keyed: Any, args: tuple[Any, ...], kwargs: dict
    ) -> None:
        self.function, self.cache, self.keyed = function, cache, keyed
        self.args, self.kwargs = args, kwargs

    def __enter__(self) -> Computation:
        function, cache = self.function, self.cache
        arguments, digests, key = self.keyed
        if Digest in map(type, self.args) or Digest in map(type, self.kwargs.values()):
            self.args, self.kwargs = _expanded(cache, self.args, self.kwargs)
        stored_arguments = arguments
        if function.unstored or Digest in map(type, arguments.values()):
            stored_arguments = {
                n: v
                for n, v in arguments.items()
                if type(v) is not Digest and n not in function.unstored
            }
        draft = DigestedCall.draft(
            function.name,
            function.module,
            # Each raw digest as a Digest (what Digest.from_raw makes), with no Python call;
            # zip without strict=: a keyword makes it a slower call (0.2 us), the lengths match.
            dict(zip(digests, map(_new_str, _DIGESTS, map(bytes.hex, digests.values())))),  # noqa: B905
            function.version,
            function.code,
            function.unkeyed,
            function._record_metadata,
        )
        try:
            self.prepared = prepare_committed_here(cache, draft, stored_arguments, key)
        except Exception as err:  # worded by the cache: built only when it fails
            self.prepared = cache.save_guarded(
                _raising(err),
                key,
                what=f"store the arguments of {function.name}",
                then="it runs uncached",
            )
        _, self.stop = record(active_metadata() + function.meta)
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: Any) -> None:
        cache, prepared = self.cache, self.prepared
        if kind is not None:  # the body raised: nothing more is stored, the error goes on
            if prepared is not None:
                cache.abandon(prepared)
            return
        metadata = self.stop()
        if prepared is not None:
            try:
                cache.commit(prepared, self.result, metadata)
            except Exception as err:
                cache.save_guarded(
                    _raising(err), self.keyed.key, what=f"store the result of {self.function.name}"
                )


def _raising(err: Exception) -> Callable[[], Any]:
    """A store step that fails with ``err``: how a failure already met reaches ``save_guarded``."""

    def store() -> Any:
        raise err

    return store


def _expanded(cache: Cache, args: tuple[Any, ...], kwargs: dict) -> tuple[tuple, dict]:
    """The call's arguments with every :class:`Digest` replaced by the value it names."""

    def value(v: Any) -> Any:
        return cache.load_value(v) if type(v) is Digest else v

    return tuple(value(v) for v in args), {k: value(v) for k, v in kwargs.items()}
