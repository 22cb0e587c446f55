"""The storage conformance suite: every backend passes the same tests.

A backend is added to the suite by one :class:`Backend` entry (see
``tests/backends.py``): factories for its value and call storages and,
optionally, a function that damages a stored entry on the medium so the
suite can prove a corrupt entry reads as a miss.  The test classes here use
the fixtures ``backend`` and ``tmp_path``.  They live in one module per
kind of storage (:mod:`.value_tests`, :mod:`.call_tests`,
:mod:`.cache_tests`, :mod:`.state_machine`); this module is where a
backend's tests import them from.
"""

from __future__ import annotations

from .backend import Backend
from .cache_tests import CacheTests
from .call_tests import CallStorageTests
from .state_machine import value_state_machine
from .value_tests import ValueStorageTests

__all__ = ["Backend", "CallStorageTests", "CacheTests", "ValueStorageTests", "value_state_machine"]
