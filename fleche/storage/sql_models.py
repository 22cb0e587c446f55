"""ORM classes over the tables of a SQL call store, for your own SQLAlchemy queries.

``Sql`` itself runs compiled Core statements on raw connections (the hot
paths cannot afford the ORM); these declarative classes map the same
tables, so a session can browse a store with the ORM::

    import json
    from sqlalchemy.orm import Session
    from fleche.storage.sql import CallModel

    with Session(store.engine) as session:
        for call in session.query(CallModel).filter_by(name="simulate"):
            print(call.key, json.loads(call.arguments))

They are imported only when first named (``fleche.storage.sql`` loads
them lazily), so opening a store never pays for the ORM.  Treat them as
read-only: a record written through them bypasses the checks of
:meth:`Sql.save <fleche.storage.sql.Sql.save>`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, relationship

from .sql_schema import arguments, calls, tables

__all__ = ["ArgumentModel", "CallModel", "MetaModel", "Model"]


class Model(DeclarativeBase):
    """The declarative base of the call store's classes (its metadata is the store's tables)."""

    metadata = tables


class CallModel(Model):
    """One row of ``calls``: a whole call record (``key``, ``name``, ``module``, ``result``…).

    ``arguments`` is the JSON text ``{name: digest}`` the record is loaded
    from; :attr:`argument_rows` are the rows of the argument index.  That
    index is keyed by name and digest first: on SQLite, reading a call's
    rows by its key scans it (so they are read only when asked for), where
    ``arguments`` is in the row already.
    """

    __table__ = calls

    argument_rows: Mapped[list[ArgumentModel]] = relationship(
        "ArgumentModel", viewonly=True, order_by=arguments.c.name, lazy="select"
    )

    def __repr__(self) -> str:
        return f"CallModel(key={self.key!r}, name={self.name!r}, module={self.module!r})"


class ArgumentModel(Model):
    """One row of the argument index: ``call_key``, argument ``name`` and its digest ``value``."""

    __table__ = arguments

    def __repr__(self) -> str:
        return (
            f"ArgumentModel(call_key={self.call_key!r}, name={self.name!r}, value={self.value!r})"
        )


class MetaModel(Model):
    """The metadata of one call: ``data`` (the JSON document) and ``typed`` (typed JSON, or ``None``).

    Mapped over the metadata columns of ``calls``: the store keeps a call's
    metadata in its row.  ``data`` is ``{namespace: {name: value}}`` for
    every entry JSON holds exactly; the others are in ``typed``
    (:func:`fleche.storage.sql_metadata.join_metadata` puts them together).
    """

    __table__ = calls
    __mapper_args__ = {"include_properties": [calls.c.key, calls.c.meta, calls.c.meta_typed]}

    call_key: Mapped[str] = column_property(calls.c.key)
    data: Mapped[dict[str, Any]] = column_property(calls.c.meta)
    typed: Mapped[str | None] = column_property(calls.c.meta_typed)

    def __repr__(self) -> str:
        return f"MetaModel(call_key={self.call_key!r}, data={self.data!r})"
