"""A record's SQLite upsert bound by position, with ``NULL`` written in for each absent column.

CPython's ``sqlite3`` binds a named parameter by making and hashing its
name each time, and binds ``None`` (or any type but an exact ``int``,
``float``, ``str`` or ``bytearray``) only after looking for an adapter,
which on CPython 3.11 raises and clears an ``AttributeError``: a save of
fourteen named columns, five of them usually ``None``, paid ~30,000
instructions for binding alone (benchmarks/bench_files.py).  Here the
statement is bound by position, and its absent columns are ``NULL`` in the
text: one text per pattern of absent columns, made once.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

from sqlalchemy.dialects import sqlite

__all__ = ["PositionalSave"]

_absent = functools.partial(operator.is_, None)
_present = functools.partial(operator.is_not, None)
#: Texts kept per statement: a record's absent columns come in few patterns.
_MAX_TEXTS = 256


class PositionalSave:
    """``PositionalSave(upsert)(row)``: the SQL text and the parameters of ``row`` (a dict by column)."""

    def __init__(self, upsert: Any) -> None:
        compiled = upsert.compile(dialect=sqlite.dialect())  # qmark: bound by position
        self._pieces = str(compiled).split("?")
        if len(self._pieces) != len(compiled.positiontup) + 1:  # a "?" of its own in the text
            raise ValueError(f"cannot bind by position: {compiled}")
        self._values = operator.itemgetter(*compiled.positiontup)
        self._texts: dict[tuple[bool, ...], str] = {}

    def __call__(self, row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        values = self._values(row)
        absent = tuple(map(_absent, values))
        text = self._texts.get(absent)
        if text is None:
            text = self._text(absent)
        return text, tuple(filter(_present, values))

    def _text(self, absent: tuple[bool, ...]) -> str:
        """The statement with ``NULL`` for the absent columns, remembered."""
        pieces = self._pieces
        parts = [pieces[0]]
        for piece, null in zip(pieces[1:], absent, strict=True):
            parts += ("NULL" if null else "?", piece)
        if len(self._texts) >= _MAX_TEXTS:
            self._texts.clear()
        text = self._texts[absent] = "".join(parts)
        return text
