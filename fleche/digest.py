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
  Dicts and sets ignore order, as their equality does; an ``OrderedDict`` keeps
  its order (two with the same items in another order are unequal) and a
  ``defaultdict`` its factory. Subclasses of built-in types (namedtuples,
  ``Counter``, your own ``dict`` subclasses) digest as the base value tagged
  with the subclass name. Equal digests mean equal values of the same type.
- Dataclasses and attrs classes: ``module.qualname`` plus the fields that take
  part in equality (``compare=True`` / ``eq=True``).
- Instances of other classes written in Python: ``module.qualname`` plus the
  state pickle would keep (``__getstate__()``: the ``__dict__`` and the
  ``__slots__`` values), when every part of it is digestible. Hooks, plugins
  and ``__digest__`` come first; extension types, a bare ``object()``,
  iterators, files and locks are refused.
- Aware datetimes: wall-clock fields plus UTC offset, not the zone name.
- Functions (``hash_code=True``): code, constants, defaults and closure values,
  not globals; see :mod:`fleche._digest_code`. Arrays: :mod:`fleche._digest_numpy`.
  pandas: :mod:`fleche._digest_pandas`. numpy and pandas are imported only when
  one of their objects is digested, or (numpy) a list, tuple or dict of more
  than 65,535 elements, whose numbers and str keys numpy hashes in bulk
  (:mod:`fleche._digest_bulk`, :mod:`fleche._digest_mixed`,
  :mod:`fleche._digest_items`; with the same digests).
- A full :class:`Digest` digests to itself (``digest(Digest(x)) == x``), so a
  stored value can be passed by digest; a short one must be expanded first.
- Other types: a hook (:func:`add_hook`), a ``__digest__`` method, or a plugin
  in the entry-point group ``fleche`` (see :mod:`fleche._digest_hooks`);
  otherwise :class:`Indigestible`, which names the type and where it sits,
  e.g. ``['solver'][2]``.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import types
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from fleche import _digest_builtins, _digest_code  # noqa: F401  (register their encoders)
from fleche import _digest_hooks as _hooks
from fleche._digest_hooks import (
    Hook,
    add_hook,
    get_hooks,
    load_entry_points,
    remove_hook,
)
from fleche._digest_rules import class_rule, instance_rule, refusal_reason, refuser
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
from fleche.errors import Indigestible

__all__ = [
    "DIGEST_LENGTH",
    "SCHEME_VERSION",
    "Digest",
    "Hook",
    "Indigestible",
    "add_hook",
    "digest",
    "digest_class",
    "digest_raw",
    "get_hooks",
    "load_entry_points",
    "remove_hook",
]

DIGEST_LENGTH = 32
"""Characters in a full digest (16 raw bytes)."""

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


# --------------------------------------------------------------------------- resolution

_lock = threading.Lock()
_H_REDUCTION = header(Tag.REDUCTION)


def digest_class(cls: type) -> Digest:
    """The digest of a class itself: its identity, ``module.qualname`` (the 0.22 helper)."""
    if not isinstance(cls, type):
        raise TypeError(f"digest_class() takes a class, not {type(cls).__name__}")
    return digest(cls)


def _resolve(cls: type) -> Encoder:
    """Find, cache and return the encoder for a type missing from the dispatch table.

    A type nothing handles makes fleche read the entry points again before
    refusing it, so a plugin installed while the process runs is found.
    """
    generation = _hooks.generation()
    encoder = BUILTIN.get(cls) or _find_encoder(cls)  # BUILTIN: a reset() may be under way
    if encoder is None:
        _hooks.load_entry_points()
        generation = _hooks.generation()
        encoder = _find_encoder(cls)
    if encoder is None:
        encoder = instance_rule(cls) or refuser(cls, refusal_reason(cls))
    with _lock:
        if generation == _hooks.generation():
            ENCODERS[cls] = encoder
    return encoder


install_resolver(_resolve)


def _find_encoder(cls: type) -> Encoder | None:
    for klass in cls.__mro__:
        hook = _hooks.hook_for(klass)
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


# --------------------------------------------------------------------------- recursion


def _recursion_error(obj: Any) -> Indigestible:
    """Explain a RecursionError: find a value that contains itself, if there is one."""
    found = _find_cycle(obj)
    if found is not None:
        path, cls = found
        return Indigestible(cls, path, "recursive structure: the value contains itself", value=obj)
    return Indigestible(
        type(obj), "", "recursive structure, or nesting deeper than the recursion limit", value=obj
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
