"""Decorated functions sent to other processes: by reference where they import, else by value.

A decorated function pickles like a plain one, by the name of its module
and its qualified name, so a worker imports it.  A function defined in a
script's ``__main__``, a notebook or another function cannot be imported
on a worker of Dask, Ray or any pool that does not run the same script:
it is sent by value instead, with cloudpickle (when installed), and the
worker rebuilds it.  The copy keeps its identity (module ``__main__``,
qualified name, version, code digest), so its calls have the keys they
have where it was defined.

The state of every function sent by value, and of those its globals refer
to (a recursive function refers to itself), goes into one cloudpickle
stream, each function once, so cycles between them pickle.  A worker
rebuilds a function once per distinct stream and reuses it.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import sys
import threading
from typing import Any

__all__ = ["importable", "rebuild", "reduce_function"]

#: Distinct functions a worker keeps rebuilt, by their pickled state.
REBUILT_MAX = 32
_rebuilt: dict[bytes, Any] = {}
_rebuilt_lock = threading.Lock()


def importable(function: Any) -> bool:
    """Whether ``function`` is found again by importing its module and looking up its name.

    A function of ``__main__`` (a script, a notebook) is not: workers of
    another program do not run that script.
    """
    module = sys.modules.get(function.__module__)
    if module is None or function.__module__ in ("__main__", "__mp_main__"):
        return False
    found: Any = module
    for part in function.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is function


def reduce_function(function: Any) -> str | tuple[Any, ...]:
    """What pickle stores for a decorated function: its name, or its state by value.

    Used as its ``__reduce__``; without cloudpickle, always its name.
    """
    if importable(function) or importlib.util.find_spec("cloudpickle") is None:
        return function.__qualname__
    return rebuild, (_dumps(function),)


def rebuild(data: bytes) -> Any:
    """The decorated function pickled by value in ``data`` (rebuilt once per process)."""
    found = _rebuilt.get(data)
    if found is not None:
        return found
    made = _loads(data)  # outside the lock: loading may rebuild others
    with _rebuilt_lock:
        if len(_rebuilt) >= REBUILT_MAX:
            _rebuilt.pop(next(iter(_rebuilt)))
        return _rebuilt.setdefault(data, made)


def _dumps(root: Any) -> bytes:
    """``root`` and the states of the functions by value it reaches, in one stream.

    Each function sent by value is written as a persistent id (its number
    and class) wherever it occurs; the stream holds ``root`` so written,
    then the state of each function in the order of their numbers, then
    ``None``.
    """
    import cloudpickle

    shipped = [root]
    numbers = {id(root): 0}

    class Shipper(cloudpickle.Pickler):
        def persistent_id(self, obj: Any) -> tuple[int, type] | None:
            if obj is not root and (
                type(obj).__reduce__ is not type(root).__reduce__ or importable(obj)
            ):
                return None  # not a decorated function, or one that imports
            if id(obj) not in numbers:
                numbers[id(obj)] = len(shipped)
                shipped.append(obj)
            return numbers[id(obj)], type(obj)

    buffer = io.BytesIO()
    pickler = Shipper(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dump(root)
    done = 0
    while done < len(shipped):
        function = shipped[done]
        _ = function.prefix  # the key's identity as it is here (a code digest needs the source)
        pickler.dump(dict(vars(function)))
        done += 1
    pickler.dump(None)
    return buffer.getvalue()


def _loads(data: bytes) -> Any:
    """The root function of a stream of :func:`_dumps`, with the others it refers to."""
    made: dict[int, Any] = {}

    class Receiver(pickle.Unpickler):
        def persistent_load(self, pid: tuple[int, type]) -> Any:
            number, kind = pid
            if number not in made:
                made[number] = kind.__new__(kind)
            return made[number]

    unpickler = Receiver(io.BytesIO(data))
    root = unpickler.load()
    number = 0
    while (state := unpickler.load()) is not None:
        vars(made[number]).update(state)
        number += 1
    return root
