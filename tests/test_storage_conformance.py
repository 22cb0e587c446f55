"""The conformance suite (fleche.testing.storage) over every backend in tests/backends.py."""

from fleche.testing.storage import CacheTests, CallStorageTests, ValueStorageTests


class TestValueStorage(ValueStorageTests):
    pass


class TestCallStorage(CallStorageTests):
    pass


class TestCache(CacheTests):
    pass
