"""The code digest of ``hash_code=True``: a function and the code and globals it uses.

A function's own digest (:mod:`fleche._digest_code`) covers its bytecode,
constants, defaults and closure, not the module globals it reads.  For
``hash_code=True`` that is too little: changing ``K = 2`` to ``K = 5`` at the
top of the module, or the body of a helper it calls, changes what the
function computes.  So the code digest also covers, transitively:

- every global constant the body reads (``LOAD_GLOBAL``, and ``module.attr``
  for a module it reads an attribute of): numbers, strings, bytes, ``None``,
  enums, and tuples, frozensets and frozen dataclasses of those, by value;
- functions (and the plain functions behind decorated ones) and classes defined
  in the user's own code (not in the standard library or installed packages):
  followed into the globals *they* read, and for classes into their methods;
- functions and classes of installed packages: their qualified name only, so a
  package upgrade does not change keys (pin ``version=`` for that).

Other globals (lists, dicts, arrays, objects) are state, not code: a log list
that grows or a registry that fills must not change every key, so they count
by their type only; pass such values as arguments to key calls by them.
Names not yet defined when the digest is taken count as missing; the decorator
takes it at the first call, when the module has finished loading.
"""

from __future__ import annotations

import dataclasses
import dis
import enum
import sys
import sysconfig
import types
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

from fleche.digest import Digest, digest

__all__ = ["code_digest"]

_LOADS_GLOBAL = {"LOAD_GLOBAL", "LOAD_NAME"}
_READS_ATTRIBUTE = {"LOAD_ATTR", "LOAD_METHOD"}
_MISSING = "<missing>"


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(sorted(r.rstrip("/") + "/" for r in roots if r))


_LIBRARY_ROOTS = _library_roots()


def _is_user_code(obj: Any) -> bool:
    """Whether ``obj`` (a function or class) is defined in the user's own code."""
    module = getattr(obj, "__module__", None) or ""
    if module == "fleche" or module.startswith("fleche."):
        return False
    code = getattr(obj, "__code__", None)
    if code is not None:
        filename = code.co_filename
    else:
        filename = getattr(sys.modules.get(module), "__file__", None)
        if filename is None:  # __main__ of a notebook or an interactive session
            return module == "__main__"
    return filename.startswith("<") or not filename.startswith(_LIBRARY_ROOTS)


def _global_reads(code: types.CodeType) -> Iterator[tuple[str, str | None]]:
    """``(name, attribute read right after it or None)`` for each global the code loads."""
    instructions = list(dis.get_instructions(code))
    for i, ins in enumerate(instructions):
        if ins.opname in _LOADS_GLOBAL:
            after = instructions[i + 1] if i + 1 < len(instructions) else None
            attribute = after.argval if after and after.opname in _READS_ATTRIBUTE else None
            yield ins.argval, attribute
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # nested functions, comprehensions, lambdas
            yield from _global_reads(const)


class _Walk:
    """Collects ``name -> digest`` for everything a function depends on."""

    def __init__(self) -> None:
        self.parts: dict[str, str] = {}
        self._seen: set[int] = set()

    def function(self, func: types.FunctionType) -> None:
        if id(func) in self._seen:
            return
        self._seen.add(id(func))
        self.parts[f"{func.__module__}.{func.__qualname__}"] = str(digest(func))
        namespace = func.__globals__
        for name, attribute in _global_reads(func.__code__):
            if name not in namespace:
                if name not in func.__builtins__:  # len, print: part of Python
                    self.parts[f"{func.__module__}.{name}"] = _MISSING
                continue
            value = namespace[name]
            if isinstance(value, types.ModuleType):
                if attribute is not None and _module_is_user_code(value):
                    member = getattr(value, attribute, _MISSING)
                    self._value(f"{value.__name__}.{attribute}", member)
                continue
            self._value(f"{func.__module__}.{name}", value)

    def _value(self, label: str, value: Any) -> None:
        plain = getattr(value, "__wrapped__", None)  # a decorated function: its plain body
        if isinstance(plain, types.FunctionType):
            value = plain
        if isinstance(value, types.FunctionType):
            if _is_user_code(value):
                self.function(value)
            else:
                self.parts[label] = f"{value.__module__}.{value.__qualname__}"
        elif isinstance(value, type):
            self._class(label, value)
        elif callable(value) and getattr(value, "__name__", None):  # builtins, ufuncs
            module = getattr(value, "__module__", None) or type(value).__module__
            self.parts[label] = f"{module}.{getattr(value, '__qualname__', value.__name__)}"
        elif _is_constant(value):
            self.parts[label] = str(digest(value))
        else:  # state, not code: a log list or a registry must not change the key
            self.parts[label] = f"<{type(value).__module__}.{type(value).__qualname__}>"

    def _class(self, label: str, cls: type) -> None:
        self.parts[label] = f"{cls.__module__}.{cls.__qualname__}"
        if id(cls) in self._seen or not _is_user_code(cls):
            return
        self._seen.add(id(cls))
        for member in vars(cls).values():
            member = getattr(member, "__func__", member)  # classmethod, staticmethod
            if isinstance(member, types.FunctionType):
                self.function(member)


def _module_is_user_code(module: types.ModuleType) -> bool:
    filename = getattr(module, "__file__", None)
    name = module.__name__
    if filename is None or name == "fleche" or name.startswith("fleche."):
        return False
    return not filename.startswith(_LIBRARY_ROOTS)


_SCALARS = (type(None), bool, int, float, complex, str, bytes, Decimal, Fraction, range, enum.Enum)


def _is_constant(value: Any) -> bool:
    """Whether ``value`` cannot change after the module set it (a constant, not state)."""
    if isinstance(value, _SCALARS):
        return True
    if type(value) in (tuple, frozenset):
        return all(_is_constant(v) for v in value)
    params = getattr(type(value), "__dataclass_params__", None)
    if params is not None and params.frozen:
        return all(_is_constant(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


def code_digest(func: types.FunctionType) -> Digest:
    """The digest of ``func``'s code together with the code and globals it uses."""
    walk = _Walk()
    walk.function(func)
    return digest(sorted(walk.parts.items()))
