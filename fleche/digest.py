"""Content digests: the identity under which fleche stores every value and call.

``digest(obj)`` is a 128-bit xxh3 hash of a canonical, type-tagged encoding of
``obj`` (see :mod:`fleche._digest_scheme`), rendered as a :class:`Digest` of 32
lowercase hex characters. Equal values give equal digests in every process, on
every machine and under every ``PYTHONHASHSEED``; nothing goes through
``hash()``, ``id()``, ``repr()`` of unordered things or pickle.

Decisions a user may notice:

- Numbers are exact and tagged by type: ``True``, ``1``, ``1.0``, ``Decimal(1)``,
  ``Fraction(1)``, ``np.int64(1)`` and ``np.float64(1)`` all differ. Every float
  NaN (Python or numpy scalar) has one digest; ``-0.0`` differs from ``0.0``.
  Inside numpy arrays values are hashed by their bits, so NaN payloads there
  are not canonicalised (that would cost a pass over the data).
- ``Decimal("1.0")`` and ``Decimal("1.00")`` differ: they are distinct decimals
  (precision is part of the value); the same holds for ``Decimal("-0")``.
- ``list``/``tuple``, ``set``/``frozenset``, ``bytes``/``bytearray`` are distinct.
  Dicts and sets ignore order. Subclasses of built-in types (namedtuples,
  ``OrderedDict``, ``defaultdict``) digest as the base value tagged with the
  subclass name; ``OrderedDict`` order and a ``defaultdict`` factory do not count.
- Dataclasses and attrs classes: ``module.qualname`` plus the fields that take
  part in equality (``compare=True`` / ``eq=True``).
- Aware datetimes: wall-clock fields plus UTC offset, not the zone name.
- Functions (``hash_code=True``): code, constants, defaults and closure values,
  not globals; see :mod:`fleche._digest_code`. Arrays: :mod:`fleche._digest_numpy`.
  pandas: :mod:`fleche._digest_pandas`. numpy and pandas are imported only when
  one of their objects is digested.
- A full :class:`Digest` digests to itself (``digest(Digest(x)) == x``), so a
  stored value can be passed by digest; a short one must be expanded first.
- Other types: a hook (:func:`add_hook`), a ``__digest__`` method, or a plugin
  in the entry-point group ``fleche``; otherwise :class:`Indigestible`, which
  names the type and where it sits, e.g. ``['solver'][2]``.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import types
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

from fleche import _digest_builtins, _digest_code  # noqa: F401  (register their encoders)
from fleche._digest_rules import class_rule, refusal_reason, refuser
from fleche._digest_scheme import (
    BUILTIN,
    ENCODERS,
    SCHEME_VERSION,
    Encoder,
    Tag,
    composite,
    encode,
    fallback,
    header,
    install_resolver,
    lookup,
    qualname,
    reset,
)
from fleche.errors import FlecheWarning, Indigestible

__all__ = [
    "DIGEST_LENGTH",
    "SCHEME_VERSION",
    "Digest",
    "Indigestible",
    "add_hook",
    "digest",
    "digest_raw",
    "remove_hook",
]

DIGEST_LENGTH = 32
"""Characters in a full digest (16 raw bytes)."""

ENTRY_POINT_GROUP = "fleche"
_HEX = frozenset("0123456789abcdef")
_new_str = str.__new__


class Digest(str):
    """A digest in lowercase hex: full (32 characters) or short (a prefix users type).

    It is a ``str``, so it compares, hashes and prints as its text;
    ``Digest("A3F9C1") == "a3f9c1"``.

    Raises
    ------
    ValueError
        If the text is not 1 to 32 hexadecimal characters.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        if not isinstance(value, str):
            raise TypeError(
                f"Digest() takes a hex string, not {type(value).__name__}; "
                "use Digest.from_raw() for the 16 raw bytes"
            )
        text = value.lower()
        if not 1 <= len(text) <= DIGEST_LENGTH or not _HEX.issuperset(text):
            bad = sorted(set(text) - _HEX)
            found = f"the characters {''.join(bad)!r}" if bad else f"{len(text)} characters"
            raise ValueError(
                f"{value!r} is not a digest: expected 1 to {DIGEST_LENGTH} hexadecimal "
                f"characters (0-9, a-f), found {found}"
            )
        return _new_str(cls, text)

    @classmethod
    def _trusted(cls, text: str) -> Digest:
        """Wrap lowercase hex known to be valid, skipping validation (hot path)."""
        return _new_str(cls, text)

    @classmethod
    def from_raw(cls, raw: bytes) -> Digest:
        """The full digest whose 16 raw bytes are ``raw``."""
        if len(raw) != DIGEST_LENGTH // 2:
            raise ValueError(f"a raw digest has {DIGEST_LENGTH // 2} bytes, got {len(raw)}")
        return _new_str(cls, raw.hex())

    @property
    def raw(self) -> bytes:
        """The 16 raw bytes; only a full digest has them."""
        if len(self) != DIGEST_LENGTH:
            raise ValueError(f"short digest {self!r} has no raw bytes; expand it first")
        return bytes.fromhex(self)

    @property
    def is_full(self) -> bool:
        """Whether this is a full digest rather than a prefix."""
        return len(self) == DIGEST_LENGTH

    def __repr__(self) -> str:
        return f"Digest({str.__repr__(self)})"


def _encode_digest(value: Digest) -> bytes:
    # Merkle property: a digest stands for the value it names.
    if len(value) != DIGEST_LENGTH:
        raise ValueError(
            f"short digest {value!r} must be expanded to a full digest "
            "(e.g. with the storage's expand()) before it can stand for a value"
        )
    return bytes.fromhex(value)


BUILTIN[Digest] = _encode_digest
reset()


def digest_raw(obj: Any) -> bytes:
    """The digest of ``obj`` as 16 raw bytes: the hot path, with no hex conversion.

    Raises
    ------
    Indigestible
        If ``obj`` or something inside it has no digest rule.
    """
    try:
        return lookup(type(obj), fallback)(obj)
    except RecursionError:
        raise _recursion_error(obj) from None


def digest(obj: Any) -> Digest:
    """The canonical digest of ``obj``; equals ``Digest.from_raw(digest_raw(obj))``.

    Raises
    ------
    Indigestible
        If ``obj`` or something inside it has no digest rule.
    """
    try:
        return _new_str(Digest, lookup(type(obj), fallback)(obj).hex())
    except RecursionError:
        raise _recursion_error(obj) from None


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`digest`.

    ``fleche.digest`` is this module (as in the 0.22 release); calling it
    digests, so ``from fleche import digest; digest(x)``, written against
    earlier versions of this package, keeps working.
    """

    def __call__(self, obj: Any) -> Digest:
        return digest(obj)


sys.modules[__name__].__class__ = _CallableModule


# --------------------------------------------------------------------------- hooks

_hooks: dict[type, Callable[[Any], Any]] = {}
_lock = threading.Lock()
_generation = 0  # bumped when hooks change, so a stale resolution is never cached
_entry_points_loaded = False
_H_REDUCTION = header(Tag.REDUCTION)


def add_hook(type_: type, func: Callable[[Any], Any], *, replace: bool = False) -> None:
    """Digest instances of ``type_`` (and its subclasses) through ``func``.

    ``func(obj)`` returns a digestible reduction of ``obj`` (say, a tuple of its
    defining fields); the digest is a node tagged with ``module.qualname`` of the
    object's type over the reduction's digest. The nearest class along the MRO
    with a hook (or a ``__digest__`` method) wins.

    Raises
    ------
    ValueError
        If ``type_`` already has a hook (pass ``replace=True``) or a built-in rule.
    """
    if not isinstance(type_, type):
        raise TypeError(f"add_hook() takes a class, not {type(type_).__name__}")
    if not callable(func):
        raise TypeError(f"the digest hook for {qualname(type_)} must be callable")
    if type_ in BUILTIN:
        raise ValueError(
            f"{qualname(type_)} has a built-in digest rule; a hook would change digests "
            "already stored. Wrap values in a class of your own instead"
        )
    with _lock:
        if type_ in _hooks and not replace:
            raise ValueError(
                f"a digest hook for {qualname(type_)} is already registered "
                f"({_hooks[type_]!r}); pass replace=True to replace it"
            )
        _hooks[type_] = func
        _forget_resolutions()


def remove_hook(type_: type) -> None:
    """Unregister the hook of ``type_``.

    Raises
    ------
    KeyError
        If ``type_`` has no hook.
    """
    with _lock:
        if type_ not in _hooks:
            raise KeyError(f"no digest hook is registered for {qualname(type_)}")
        del _hooks[type_]
        _forget_resolutions()


def _forget_resolutions() -> None:
    global _generation
    _generation += 1
    reset()


# --------------------------------------------------------------------------- resolution


def _resolve(cls: type) -> Encoder:
    """Find, cache and return the encoder for a type missing from the dispatch table."""
    generation = _generation
    encoder = BUILTIN.get(cls) or _find_encoder(cls)  # BUILTIN: a reset() may be under way
    if encoder is None and not _entry_points_loaded:
        _load_entry_points()
        generation = _generation
        encoder = _find_encoder(cls)
    if encoder is None:
        encoder = refuser(cls, refusal_reason(cls))
    with _lock:
        if generation == _generation:
            ENCODERS[cls] = encoder
    return encoder


install_resolver(_resolve)


def _find_encoder(cls: type) -> Encoder | None:
    for klass in cls.__mro__:
        hook = _hooks.get(klass)
        if hook is not None:
            return _reduction_encoder(cls, hook)
        if "__digest__" in vars(klass):
            return _dunder_encoder(cls)
    return class_rule(cls)


def _reduction_encoder(cls: type, reduce: Callable[[Any], Any]) -> Encoder:
    name = encode(qualname(cls))
    return lambda obj: composite(_H_REDUCTION, [name, encode(reduce(obj))])


def _dunder_encoder(cls: type) -> Encoder:
    name = encode(qualname(cls))

    def encode_dunder(obj: Any) -> bytes:
        reduced = obj.__digest__()
        if isinstance(reduced, Digest):  # the object names its own digest
            return _encode_digest(reduced)
        return composite(_H_REDUCTION, [name, encode(reduced)])

    return encode_dunder


def _load_entry_points() -> None:
    """Let installed plugins register their hooks; done once, on the first unknown type."""
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()()
        except Exception as exc:  # a broken plugin must not break digesting
            warnings.warn(
                f"digest plugin {entry_point.name!r} ({entry_point.value}) failed to "
                f"register: {exc!r}; the types it handles stay indigestible",
                FlecheWarning,
                stacklevel=2,
            )


# --------------------------------------------------------------------------- recursion


def _recursion_error(obj: Any) -> Indigestible:
    """Explain a RecursionError: find a value that contains itself, if there is one."""
    found = _find_cycle(obj)
    if found is not None:
        path, cls = found
        return Indigestible(cls, path, "recursive structure: the value contains itself")
    return Indigestible(
        type(obj), "", "recursive structure, or nesting deeper than the recursion limit"
    )


def _children(obj: Any) -> Iterator[tuple[str, Any]] | None:
    if isinstance(obj, (list, tuple, deque)):
        return ((f"[{i}]", x) for i, x in enumerate(obj))
    if isinstance(obj, dict):
        return ((f"[{k!r}]", v) for k, v in obj.items())
    if isinstance(obj, (set, frozenset)):
        return (("{…}", x) for x in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return ((f".{f.name}", getattr(obj, f.name)) for f in dataclasses.fields(obj))
    fields = getattr(type(obj), "__attrs_attrs__", None)
    if fields is not None:
        return ((f".{a.name}", getattr(obj, a.name)) for a in fields)
    return None


def _find_cycle(root: Any) -> tuple[str, type] | None:
    """Path to the first value met again inside itself (an iterative depth-first walk)."""
    on_path: set[int] = {id(root)}
    finished: set[int] = set()
    stack = [(root, "", _children(root) or iter(()))]
    while stack:
        node, path, children = stack[-1]
        for suffix, child in children:
            if id(child) in on_path:
                return path + suffix, type(child)
            grandchildren = _children(child)
            if grandchildren is not None and id(child) not in finished:
                on_path.add(id(child))
                stack.append((child, path + suffix, grandchildren))
                break
        else:
            stack.pop()
            on_path.discard(id(node))
            finished.add(id(node))
    return None
