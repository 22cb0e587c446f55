"""Cached functions as methods: instance, class and static methods.

A :class:`~fleche.wrapper.CachedFunction` is a descriptor, like a plain
function: looked up on an instance it returns a :class:`BoundCachedFunction`
that passes the instance as the first argument to the call and to every
helper (``.call``, ``.digest``, ``.contains``, ``.load``, ``.record``,
``.query``, ``.rerun``, ``.bind``, ``.explain``).

The policy for ``self`` (and ``cls``): it is an argument like any other, so
it is part of the key through the digest rules.  A dataclass or attrs
instance is digested by its fields; a class by its qualified name; an
instance of a plain class has no digest rule, so its calls run uncached with
a :class:`~fleche.errors.CacheWarning` until the class gets a
``__digest__`` method (or a hook), or the method is decorated with
``ignore=("self",)`` to leave the instance out of the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .call import Call, LazyCall
    from .digest import Digest
    from .explain import Explanation
    from .query import QueryIterator
    from .state import BoundWrapper
    from .wrapper_helpers import FunctionHelpers

__all__ = ["BoundCachedFunction", "FUNCTION", "CLASSMETHOD", "STATICMETHOD", "unwrap_method"]

#: How a cached function binds when looked up on a class or an instance.
FUNCTION = "function"
CLASSMETHOD = "classmethod"
STATICMETHOD = "staticmethod"


def unwrap_method(func: Any) -> tuple[Callable[..., Any], str]:
    """The plain function inside a ``classmethod``/``staticmethod``, and how it binds.

    Lets ``@fleche()`` sit above ``@classmethod`` or ``@staticmethod``.
    """
    if isinstance(func, classmethod):
        return func.__func__, CLASSMETHOD
    if isinstance(func, staticmethod):
        return func.__func__, STATICMETHOD
    return func, FUNCTION


def bind_descriptor(function: FunctionHelpers, kind: str, instance: Any, owner: type | None) -> Any:
    """What ``instance.method`` (or ``owner.method``) gives for a cached function."""
    if kind == STATICMETHOD:
        return function
    if kind == CLASSMETHOD:
        return BoundCachedFunction(function, owner if owner is not None else type(instance))
    if instance is None:
        return function  # looked up on the class: the function itself, called with self
    return BoundCachedFunction(function, instance)


class BoundCachedFunction:
    """A cached function with its first argument (the instance or the class) bound.

    Calling it, and each helper, passes ``__self__`` first, the way a bound
    method does.  :meth:`query` also matches ``__self__`` unless that
    parameter is ignored, so ``obj.method.query()`` finds this object's calls.
    """

    __slots__ = ("__func__", "__self__")

    def __init__(self, function: FunctionHelpers, instance: Any) -> None:
        self.__func__ = function
        self.__self__ = instance

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(self.__self__, *args, **kwargs)

    def bind(self, /, *args: Any, **kwargs: Any) -> BoundWrapper:
        """See :meth:`CachedFunction.bind <fleche.wrapper.CachedFunction.bind>`."""
        return self.__func__.bind(self.__self__, *args, **kwargs)

    def digest(self, /, *args: Any, **kwargs: Any) -> Digest:
        """See :meth:`CachedFunction.digest <fleche.wrapper.CachedFunction.digest>`."""
        return self.__func__.digest(self.__self__, *args, **kwargs)

    def contains(self, /, *args: Any, **kwargs: Any) -> bool:
        """See :meth:`CachedFunction.contains <fleche.wrapper.CachedFunction.contains>`."""
        return self.__func__.contains(self.__self__, *args, **kwargs)

    def load(self, /, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`CachedFunction.load <fleche.wrapper.CachedFunction.load>`."""
        return self.__func__.load(self.__self__, *args, **kwargs)

    def call(self, /, *args: Any, **kwargs: Any) -> Call:
        """See :meth:`CachedFunction.call <fleche.wrapper.CachedFunction.call>`."""
        return self.__func__.call(self.__self__, *args, **kwargs)

    def record(self, /, *args: Any, **kwargs: Any) -> LazyCall:
        """See :meth:`CachedFunction.record <fleche.wrapper.CachedFunction.record>`."""
        return self.__func__.record(self.__self__, *args, **kwargs)

    def rerun(self, /, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`CachedFunction.rerun <fleche.wrapper.CachedFunction.rerun>`."""
        return self.__func__.rerun(self.__self__, *args, **kwargs)

    def explain(self, /, *args: Any, **kwargs: Any) -> Explanation:
        """See :meth:`CachedFunction.explain <fleche.wrapper.CachedFunction.explain>`."""
        return self.__func__.explain(self.__self__, *args, **kwargs)

    def query(
        self,
        /,
        *args: Any,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
        **arguments: Any,
    ) -> QueryIterator:
        """Stored calls of this method on ``__self__`` (see :meth:`CachedFunction.query`).

        The bound instance is matched unless its parameter is ignored.
        """
        if self._first_parameter() is None:
            return self.__func__.query(*args, metadata=metadata, **arguments)
        return self.__func__.query(self.__self__, *args, metadata=metadata, **arguments)

    def _first_parameter(self) -> str | None:
        return next(iter(self.__func__._bind.signature.parameters), None)

    # -- what a bound method also answers ---------------------------------------

    @property
    def __name__(self) -> str:
        return self.__func__.__name__

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self.__func__.func

    @property
    def cache(self) -> Any:
        """The cache the function uses now."""
        return self.__func__.cache

    @property
    def fleche(self) -> BoundCachedFunction:
        """The helpers again (``obj.method.fleche.digest(...)``), the 0.22 spelling."""
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Like a bound method: rebuilt by looking the name up on the instance (or class) again.
        return (getattr, (self.__self__, self.__func__.__name__))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoundCachedFunction):
            return NotImplemented
        return self.__func__ is other.__func__ and self.__self__ is other.__self__

    def __hash__(self) -> int:
        # Like a bound method: the identity of the instance, never its (maybe absent) hash.
        return hash((id(self.__func__), id(self.__self__)))

    def __repr__(self) -> str:
        return f"<bound fleche cached function {self.__func__.module}.{self.__func__.name} of {self.__self__!r}>"
