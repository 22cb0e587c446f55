"""Digests of code: Python functions, code objects, builtins, methods and partials.

A Python function is digested by what it computes with, not by its name: its
bytecode, constants (nested code objects included), names, defaults and the
values captured in its closure. Globals it reads are *not* included, so a change
of a helper function elsewhere does not change the digest; neither are the file
name or line numbers, so moving a function leaves its digest alone. The
docstring is a constant of the code and does count. Bytecode differs between
Python versions, so function digests do too.
"""

from __future__ import annotations

import functools
import struct
import threading
import types
from typing import Any

from fleche._digest_scheme import (
    BUILTIN,
    Tag,
    composite,
    encode,
    header,
    leaf,
    named_callable,
    relocate,
)
from fleche.errors import Indigestible

_H_FUNCTION = header(Tag.FUNCTION)
_H_CODE = header(Tag.CODE)
_H_METHOD = header(Tag.METHOD)
_H_PARTIAL = header(Tag.PARTIAL)
_H_BACKREF = header(Tag.FUNCTION_BACKREF)
_EMPTY_CELL = leaf(header(Tag.EMPTY_CELL), b"")
_pack_counts = struct.Struct("<IIII").pack

_active = threading.local()  # functions being digested, for closures that capture themselves


def _enc_code(code: types.CodeType) -> bytes:
    counts = _pack_counts(
        code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags
    )
    return composite(
        _H_CODE,
        [
            encode(code.co_code),
            encode(code.co_consts),
            encode(code.co_names),
            encode(code.co_varnames),
            encode(code.co_freevars),
            encode(code.co_cellvars),
            leaf(_H_CODE, counts),
        ],
    )


def _cell_value(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a cell not yet assigned
        return _EMPTY_CELL_MARK


class _EmptyCell:
    """Stands for an unassigned closure cell while digesting."""


_EMPTY_CELL_MARK = _EmptyCell()


def _enc_function(func: types.FunctionType) -> bytes:
    stack = getattr(_active, "stack", None)
    if stack is None:
        stack = _active.stack = []
    for depth, active in enumerate(reversed(stack)):
        if active is func:  # a recursive inner function captures itself
            return leaf(_H_BACKREF, depth.to_bytes(4, "little"))
    stack.append(func)
    try:
        names = func.__code__.co_freevars
        cells = func.__closure__ or ()
        children = [
            ("(code)", func.__code__),
            (".__defaults__", func.__defaults__),
            (".__kwdefaults__", func.__kwdefaults__),
        ]
        children.extend(
            (f".<closure {n}>", _cell_value(c)) for n, c in zip(names, cells, strict=True)
        )
        try:
            return composite(_H_FUNCTION, [encode(value) for _, value in children])
        except Indigestible:
            relocate(children)
            raise
    finally:
        stack.pop()


def _enc_builtin(func: Any) -> bytes:
    # len, math.sqrt: by name. [].append: by name and the object it is bound to.
    owner = func.__self__
    if owner is None or isinstance(owner, types.ModuleType):
        module = func.__module__ or getattr(owner, "__name__", "builtins")
        return named_callable(f"{module}.{func.__qualname__}")
    return _bound(named_callable(f"{type(owner).__module__}.{func.__qualname__}"), owner)


def _enc_descriptor(func: Any) -> bytes:
    # str.upper, object.__init__, dict.__dict__['fromkeys']: by owner class and name.
    owner = func.__objclass__
    return named_callable(f"{owner.__module__}.{owner.__qualname__}.{func.__name__}")


def _enc_method_wrapper(func: Any) -> bytes:
    owner = func.__self__
    return _bound(named_callable(f"{type(owner).__module__}.{func.__qualname__}"), owner)


def _bound(function_digest: bytes, owner: Any) -> bytes:
    try:
        return composite(_H_METHOD, [function_digest, encode(owner)])
    except Indigestible as err:
        raise err.located(".__self__") from None


def _enc_method(method: types.MethodType) -> bytes:
    return _bound(encode(method.__func__), method.__self__)


def _enc_partial(obj: functools.partial) -> bytes:
    parts = ((".func", obj.func), (".args", obj.args), (".keywords", obj.keywords))
    try:
        return composite(_H_PARTIAL, [encode(value) for _, value in parts])
    except Indigestible:
        relocate(parts)
        raise


BUILTIN.update(
    {
        types.FunctionType: _enc_function,
        types.CodeType: _enc_code,
        types.BuiltinFunctionType: _enc_builtin,
        types.MethodType: _enc_method,
        types.MethodDescriptorType: _enc_descriptor,
        types.WrapperDescriptorType: _enc_descriptor,
        types.ClassMethodDescriptorType: _enc_descriptor,
        types.MethodWrapperType: _enc_method_wrapper,
        functools.partial: _enc_partial,
        _EmptyCell: lambda _: _EMPTY_CELL,
    }
)
