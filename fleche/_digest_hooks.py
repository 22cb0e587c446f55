"""Digest hooks: how types without a built-in rule are digested, by hand or by plugin.

Two tables, consulted along a type's MRO, nearest class first: hooks added
by hand with :func:`add_hook`, which always win, then hooks installed
packages declare in the entry-point group ``fleche``.  An entry point named
``digest`` resolves to a :class:`Hook`, a ``(type, function)`` tuple or a
list of them (the 0.22 form); any other entry point in the group may
instead be a function that registers hooks itself when called (run once).
Entry points are read lazily: whenever a type has no rule, before it is
refused (:func:`load_entry_points`), so a package installed while the
process runs is still found.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from fleche._digest_scheme import BUILTIN, qualname, reset

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["ENTRY_POINT_GROUP", "Hook", "add_hook", "get_hooks", "load_entry_points", "remove_hook"]

ENTRY_POINT_GROUP = "fleche"
#: The entry-point name whose object is a hook, a ``(type, function)`` tuple or a list of them.
ENTRY_POINT_NAME = "digest"

_log = logging.getLogger("fleche.digest")
_manual: dict[type, Callable[[Any], Any]] = {}  # insertion order: oldest first
_plugged: dict[type, Callable[[Any], Any]] = {}  # the first entry point to name a type wins
_called: set[str] = set()  # registering functions already run, by "name = value"
_lock = threading.Lock()
_generation = 0  # bumped when hooks change, so a stale resolution is never cached


@dataclasses.dataclass(frozen=True)
class Hook:
    """Digest instances of ``type`` (and its subclasses) through ``digest(obj)``.

    ``digest`` returns a :class:`~fleche.digest.Digest` or any digestible
    reduction of the object (say, a tuple of its defining fields).
    """

    type: type
    digest: Callable[[Any], Any]


def generation() -> int:
    """A number that changes whenever a hook is added or removed."""
    return _generation


def _changed() -> None:
    global _generation
    _generation += 1
    reset()


def _as_hook(item: Any) -> Hook:
    if isinstance(item, Hook):
        hook = item
    elif isinstance(item, tuple) and len(item) == 2:
        hook = Hook(*item)
    else:
        raise TypeError(f"a digest hook is a Hook or a (type, function) tuple, not {item!r}")
    if not isinstance(hook.type, type):
        raise TypeError(f"a digest hook is registered for a class, not {hook.type!r}")
    if not callable(hook.digest):
        raise TypeError(f"the digest hook for {qualname(hook.type)} must be callable")
    if hook.type in BUILTIN:
        raise ValueError(
            f"{qualname(hook.type)} has a built-in digest rule; a hook would change digests "
            "already stored. Wrap values in a class of your own instead"
        )
    return hook


def add_hook(
    hook: Hook | tuple[type, Callable[[Any], Any]] | type,
    func: Callable[[Any], Any] | None = None,
    *,
    replace: bool = False,
) -> None:
    """Digest instances of a type (and its subclasses) through a function.

    ``add_hook(Celsius, lambda c: c.degrees)`` registers a reduction; the
    digest is a node tagged with ``module.qualname`` of the object's type
    over the reduction's digest.  The nearest class along the MRO with a
    hook (or a ``__digest__`` method) wins.  A second hook for the same
    class raises ``ValueError`` unless ``replace=True``.

    The 0.22 forms ``add_hook(Hook(Celsius, fn))`` and
    ``add_hook((Celsius, fn))`` are accepted too; they replace an earlier
    hook of the class, as in that release (the newest hook wins).
    """
    if func is None and isinstance(hook, Hook | tuple):
        found, replace = _as_hook(hook), True
    else:
        found = _as_hook((hook, func))
    with _lock:
        if found.type in _manual and not replace:
            raise ValueError(
                f"a digest hook for {qualname(found.type)} is already registered "
                f"({_manual[found.type]!r}); pass replace=True to replace it"
            )
        _manual.pop(found.type, None)  # re-inserted as the newest
        _manual[found.type] = found.digest
        _changed()


def remove_hook(type_: type) -> None:
    """Unregister the hook added by hand for ``type_``; ``KeyError`` if there is none."""
    with _lock:
        if type_ not in _manual:
            raise KeyError(f"no digest hook is registered for {qualname(type_)}")
        del _manual[type_]
        _changed()


def get_hooks() -> list[Hook]:
    """Every hook in force: those added by hand, newest first, then those of entry points."""
    with _lock:
        manual = [Hook(t, f) for t, f in reversed(_manual.items())]
        return manual + [Hook(t, f) for t, f in _plugged.items() if t not in _manual]


def hook_for(cls: type) -> Callable[[Any], Any] | None:
    """The hook registered for exactly ``cls``: one added by hand, else one from a plugin."""
    return _manual.get(cls) or _plugged.get(cls)


def load_entry_points() -> None:
    """Read the hooks installed packages declare in the entry-point group ``fleche``.

    A hook added by hand for the same class keeps winning.  An entry point
    that fails to load is logged (with its traceback) and skipped; it never
    breaks digesting other values.
    """
    from importlib import metadata  # ~20 ms (it imports email): only once a type has no rule

    added = False
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            added |= _load(entry_point)
        except Exception:
            _log.error(
                "fleche: the digest entry point %r (%s) failed to load; the types it "
                "handles stay indigestible",
                entry_point.name,
                entry_point.value,
                exc_info=True,
            )
    if added:
        with _lock:
            _changed()


def _load(entry_point: EntryPoint) -> bool:
    """Register what one entry point provides; whether a new hook came in."""
    tag = f"{entry_point.name} = {entry_point.value}"
    if tag in _called:
        return False
    provided = entry_point.load()
    if isinstance(provided, Hook | tuple | list):
        items: Iterable[Any] = provided if isinstance(provided, list) else [provided]
        hooks = [_as_hook(item) for item in items]
        with _lock:
            new = [hook for hook in hooks if hook.type not in _plugged]
            _plugged.update((hook.type, hook.digest) for hook in new)
        return bool(new)
    if entry_point.name == ENTRY_POINT_NAME or not callable(provided):
        raise TypeError(
            f"the entry point {tag} must be a Hook, a (type, function) tuple or a list of them, "
            f"not {type(provided).__name__}"
        )
    _called.add(tag)
    provided()  # our own form: a function that calls add_hook
    return False
