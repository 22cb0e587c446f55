"""What a cached function offers besides being called: its key, its stored call, queries.

``f.digest(...)``, ``f.contains(...)``, ``f.load(...)``, ``f.record(...)``,
``f.query(...)``, ``f.rerun(...)``, ``f.bind(...)``, ``f.explain(...)`` and
the same on ``f.fleche`` (where 0.22 scripts look for them).  Mixed into
:class:`~fleche.wrapper.CachedFunction`, which provides the function's
identity (``name``, ``module``, ``version``, ``code``, ``unkeyed``,
``ignored``), how its arguments bind (``_bind``), the lookup key
(``_keyed``), its cache and one computation (``_compute``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar

from .caches import RefreshingCache
from .call import Call, LazyCall, QueryCall
from .digest import Digest
from .profile import bind
from .query import QueryIterator
from .state import BoundWrapper, active_cache
from .state import cache as activate

if TYPE_CHECKING:
    from .explain import Explanation

__all__ = ["FunctionHelpers"]

P = ParamSpec("P")
R = TypeVar("R")


class FunctionHelpers(Generic[P, R]):
    """The helpers of a cached function: nothing here runs the function, except :meth:`rerun`."""

    def call(self, /, *args: P.args, **kwargs: P.kwargs) -> Call:
        """This call, not run: arguments by name as they enter the key, result ``None``."""
        return Call(
            self.name,
            self._bind(args, kwargs),
            module=self.module,
            version=self.version,
            code=self.code,
            unkeyed=self.unkeyed,
        )

    def digest(self, /, *args: P.args, **kwargs: P.kwargs) -> Digest:
        """The lookup key of this call (nothing is run or read)."""
        return self._keyed(active_cache() if self._cache is None else self._cache, args, kwargs).key

    def contains(self, /, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Whether this call is stored."""
        return self.cache.contains(self.digest(*args, **kwargs))

    def load(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """The stored result of this call (``KeyError`` if it is not stored; nothing runs)."""
        return self.cache.load_result(self.digest(*args, **kwargs))

    def record(self, /, *args: P.args, **kwargs: P.kwargs) -> LazyCall:
        """The stored record of this call: arguments, result and metadata (``KeyError`` if none)."""
        return self.cache.load(self.digest(*args, **kwargs))

    def rerun(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Compute this call again and store the new result over the old one.

        Decorated functions it calls are computed again too (those using
        the active cache, not a ``cache=`` of their own).
        """
        cache = self.cache
        with activate(RefreshingCache(active_cache())):
            return self._compute(cache, self._keyed(cache, args, kwargs), args, kwargs)

    def bind(self, /, *args: P.args, **kwargs: P.kwargs) -> BoundWrapper:
        """This function (with ``args``/``kwargs`` applied) bound to the active cache and metadata.

        See :class:`~fleche.state.BoundWrapper`: it runs with them wherever
        it is called, e.g. when sent to a process pool.
        """
        return BoundWrapper.bind(
            functools.partial(self, *args, **kwargs) if args or kwargs else self
        )

    def query(
        self,
        /,
        *args: Any,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
        **arguments: Any,
    ) -> QueryIterator:
        """Stored calls of this function whose arguments equal the ones given.

        Arguments may be given by position or name; those not given, given
        as ``None`` (match ``None`` itself with :class:`~fleche.call.Exactly`)
        or ignored are wildcards.  ``metadata`` filters on recorded
        metadata, e.g. ``metadata={"tags": {"project": "x"}}``.  Calls of
        every version of the function are found.
        """
        signature = self._bind.signature
        unknown = arguments.keys() - signature.parameters.keys()
        if unknown:
            raise TypeError(
                f"{self.name}.query() got arguments {sorted(unknown)} the function does not take"
            )
        if args:
            arguments = bind(signature, args, arguments, partial=True)
        given = {n: v for n, v in arguments.items() if v is not None and n not in self.ignored}
        module = None if "module" in self.unkeyed else self.module
        template = QueryCall(
            name=self.name, module=module, arguments=given or None, metadata=metadata or None
        )
        return self.cache.query(template)

    @property
    def fleche(self) -> Self:
        """The helpers again (``f.fleche.digest(...)``), where 0.22 scripts look for them."""
        return self

    def explain(self, /, *args: P.args, **kwargs: P.kwargs) -> Explanation:
        """Why this call is (not) stored: the nearest stored calls and what differs.

        Nothing runs; see :mod:`fleche.explain`.
        """
        from .explain import explain

        return explain(self, args, kwargs)
