"""What a function contributes to its calls: parameters, identity, ignored and required names.

A :class:`FunctionProfile` is decided once per function (when it is
decorated) and answers the questions every call asks: how do these
arguments bind to parameter names, which of them enter the lookup key, and
which required parameters were left out.  The markers ``Ignored[T]`` and
``Required[T]`` let a signature say the same in its annotations.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, TypeVar, get_args, get_origin

from ._code_deps import code_digest
from .digest import Digest

__all__ = [
    "Binder",
    "FunctionProfile",
    "Ignored",
    "Required",
    "Unstored",
    "bind",
    "marked",
    "marked_names",
    "signature_of",
    "version_text",
]

T = TypeVar("T")


class _Marker:
    """Annotation marker: ``Ignored[T]``, ``Required[T]``, ``Unstored[T]`` in a signature."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getitem__(self, tp: type[T]) -> Any:
        return Annotated[tp, self]

    def __repr__(self) -> str:
        return self.name


#: ``def f(x, log: Ignored[Logger])``: the argument is left out of the key.
Ignored = _Marker("Ignored")
#: ``def f(x: Required[int] = 0)``: the argument is always part of the key,
#: even where a decorator would ignore it.
Required = _Marker("Required")
#: ``def f(frames: Unstored[np.ndarray])``: the argument is keyed by its digest
#: but its value is not copied into the store (a large input you keep anyway).
Unstored = _Marker("Unstored")


def marked(annotation: Any, marker: _Marker) -> bool:
    """Whether a parameter annotation carries ``marker`` (``Ignored``/``Required``)."""
    return get_origin(annotation) is Annotated and any(
        m is marker for m in get_args(annotation)[1:]
    )


def signature_of(func: Callable[..., Any]) -> inspect.Signature:
    """The signature of ``func``, string annotations (PEP 563) resolved where they can be."""
    try:
        return inspect.signature(func, eval_str=True)
    except Exception:
        return inspect.signature(func)


def bind(
    func: Callable[..., Any] | inspect.Signature,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    apply_defaults: bool = False,
    partial: bool = False,
) -> dict[str, Any]:
    """The arguments of a call by parameter name.

    ``apply_defaults`` fills in the parameters not given; ``partial`` allows
    parameters to be missing (a template rather than a call).
    """
    signature = func if isinstance(func, inspect.Signature) else signature_of(func)
    bound = (signature.bind_partial if partial else signature.bind)(*args, **kwargs)
    if apply_defaults:
        bound.apply_defaults()
    return dict(bound.arguments)


def marked_names(
    signature: inspect.Signature, given: Iterable[str] | None, marker: _Marker, what: str
) -> frozenset[str]:
    names = frozenset(given or ()) | {
        n for n, p in signature.parameters.items() if marked(p.annotation, marker)
    }
    unknown = names - signature.parameters.keys()
    if unknown:
        raise ValueError(
            f"{what}= names {sorted(unknown)}, which are not parameters of the function"
        )
    return names


def version_text(version: Any) -> str | None:
    """A function's version as it is keyed and stored: text (``version=3`` is ``"3"``)."""
    return version if version is None or type(version) is str else str(version)


@dataclasses.dataclass(frozen=True)
class FunctionProfile:
    """A function's part of every call key: its signature, identity, ignored and required names.

    ``ignored`` parameters are left out of the key; ``required`` ones are
    always in it (an argument that cannot be digested then raises instead
    of running uncached).
    """

    signature: inspect.Signature
    qualname: str
    module: str
    version: str | None
    code_digest: Digest | None
    ignored: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        func: Callable[..., Any],
        *,
        version: str | None = None,
        hash_code: bool = False,
        ignore: Iterable[str] | None = None,
        require: Iterable[str] | None = None,
    ) -> FunctionProfile:
        """The profile of ``func``; ``ignore``/``require`` add to its ``Ignored``/``Required`` marks."""
        signature = signature_of(func)
        ignored = marked_names(signature, ignore, Ignored, "ignore")
        required = marked_names(signature, require, Required, "require")
        both = ignored & required
        if both:
            raise ValueError(f"arguments {sorted(both)} cannot be both ignored and required")
        return cls(
            signature=signature,
            qualname=func.__qualname__,
            module=func.__module__,
            version=version_text(version),
            code_digest=code_digest(func) if hash_code else None,
            ignored=ignored,
            required=required,
        )

    def strip_for_key(self, bound: Mapping[str, Any] | inspect.BoundArguments) -> dict[str, Any]:
        """The bound arguments that enter the key: the ignored ones left out."""
        arguments = bound.arguments if isinstance(bound, inspect.BoundArguments) else bound
        return {n: v for n, v in arguments.items() if n not in self.ignored}

    def check_required(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[str]:
        """The required parameters this call does not pass (left to their defaults), sorted."""
        given = self.signature.bind_partial(*args, **kwargs).arguments
        return sorted(self.required - given.keys())


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class Binder:
    """Binds call arguments to parameter names, defaults applied, ignored ones dropped.

    Plain positional calls take a fast path that skips ``Signature.bind``
    (about 3 µs of the 5 µs budget of a key; benchmarks/bench_core.py).
    """

    def __init__(self, signature: inspect.Signature, ignored: frozenset[str]) -> None:
        params = list(signature.parameters.values())
        self.signature = signature
        self.names = tuple(p.name for p in params)
        self.simple = all(p.kind in _POSITIONAL for p in params)
        self.ignored = ignored
        # _fill[n]: the defaults completing a call with n positional arguments,
        # or None when some parameter after the n-th has no default.
        self._fill: list[tuple[tuple[str, Any], ...] | None] = []
        for n in range(len(params) + 1):
            rest = params[n:]
            usable = all(p.default is not p.empty for p in rest)
            self._fill.append(tuple((p.name, p.default) for p in rest) if usable else None)

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if self.simple and not kwargs and len(args) <= len(self.names):
            fill = self._fill[len(args)]
            if fill is not None:
                arguments = dict(zip(self.names, args, strict=False))
                if fill:
                    arguments.update(fill)
                return self._drop_ignored(arguments) if self.ignored else arguments
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return self._drop_ignored(dict(bound.arguments))

    def _drop_ignored(self, arguments: dict[str, Any]) -> dict[str, Any]:
        for name in self.ignored:
            arguments.pop(name, None)
        return arguments
