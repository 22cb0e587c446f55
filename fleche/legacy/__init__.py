"""Bringing stores of the fleche 0.22 release along: read them, re-digest them, import them.

:func:`import_store` copies the calls of a 0.22 store (any of its
templates: ``sql`` with SQLite or PostgreSQL records and pickle or HDF5
values, ``pickle``, ``cloudpickle``, ``dill``, ``bagofholding_hdf``) into
one of our caches, and returns an :class:`ImportReport`.  The old store is
only read, and never through the 0.22 package: its tables with SQLAlchemy,
its files with pickle and bagofholding (:mod:`.stores`), its classes
mapped to small stand-ins (:mod:`.unpickling`).
"""

from .importer import PROVENANCE, ImportReport, Problem, import_store
from .stores import LegacyCall, LegacyStore, open_legacy

__all__ = [
    "PROVENANCE",
    "ImportReport",
    "LegacyCall",
    "LegacyStore",
    "Problem",
    "import_store",
    "open_legacy",
]
