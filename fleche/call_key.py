"""Lookup keys: the digest of a function's identity, then of its arguments by name.

The identity part is hashed once per function (:func:`function_prefix`)
and the arguments are streamed after it (:func:`lookup_key`); the decorator
keeps the raw argument digests it took and seals the key from them
(:func:`key_of`), so nothing below it digests them again.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import xxhash

from .digest import Digest, digest_raw
from .errors import Indigestible

_new_str = str.__new__

__all__ = [
    "KEY_SCHEME",
    "OPTIONAL_IDENTITY",
    "argument_digests",
    "argument_raw",
    "function_prefix",
    "key_of",
    "lookup_key",
]

#: Version of the lookup-key layout; bump it when the layout changes.
KEY_SCHEME = 1

#: Identity fields a decorator may leave out of the key (``hash_module=False``…).
OPTIONAL_IDENTITY = frozenset({"module", "version"})


@functools.lru_cache(maxsize=4096)  # every save re-keys its record: hash each identity once
def function_prefix(
    name: str,
    module: str,
    version: str | None = None,
    code: Digest | None = None,
    unkeyed: frozenset[str] = frozenset(),
) -> bytes:
    """The raw digest of a function's identity: the fixed first part of every key.

    ``unkeyed`` names identity fields (``"module"``, ``"version"``) left out of
    the key, so that e.g. moving a function to another module keeps its calls.
    """
    unknown = unkeyed - OPTIONAL_IDENTITY
    if unknown:
        raise ValueError(
            f"cannot leave {sorted(unknown)} out of a lookup key; only {sorted(OPTIONAL_IDENTITY)}"
        )
    return digest_raw(
        (
            "fleche.call",
            KEY_SCHEME,
            name,
            None if "module" in unkeyed else module,
            None if "version" in unkeyed else version,
            code,
        )
    )


def argument_raw(name: str, value: Any) -> bytes:
    """The raw digest of one argument; an :class:`Indigestible` names the argument."""
    try:
        return digest_raw(value)
    except Indigestible as err:
        raise err.located(f"arguments[{name!r}]") from None


def argument_digests(arguments: Mapping[str, Any]) -> dict[str, bytes]:
    """The raw digest of each argument, by name."""
    try:
        return {name: digest_raw(value) for name, value in arguments.items()}
    except Indigestible:  # find the culprit again, now paying for its name
        for name, value in arguments.items():
            argument_raw(name, value)
        raise


_NAMES: dict[str, bytes] = {}


def _name_raw(name: str) -> bytes:
    raw = _NAMES.get(name)
    if raw is None:
        raw = _NAMES[name] = digest_raw(name)
    return raw


def key_of(prefix: bytes, digests: Mapping[str, bytes]) -> Digest:
    """The lookup key from a function prefix and the raw digests of the arguments.

    Arguments are taken in name order, so the key does not depend on the
    order in which a storage gives them back.
    """
    # One-shot hashing of the joined parts is the same digest as streaming
    # them, and half the cost for the usual handful of arguments
    # (benchmarks/bench_core.py).
    parts = [prefix]
    for name in sorted(digests):
        parts.append(_name_raw(name))
        parts.append(digests[name])
    # A Digest made as digest.py makes its own: the hex is valid by construction.
    return _new_str(Digest, xxhash.xxh3_128_hexdigest(b"".join(parts)))


def lookup_key(prefix: bytes, arguments: Mapping[str, Any]) -> Digest:
    """The key of a call: its function prefix, then each argument by name.

    Values may be given as digests (``digest(Digest(x)) == x``), so a
    digested call has the same key as the call it was made from.
    """
    return key_of(prefix, argument_digests(arguments))
