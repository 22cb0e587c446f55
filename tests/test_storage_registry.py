"""The storage registry: names and kinds to constructors, the 0.22 names, ``to_config``."""

from __future__ import annotations

import dataclasses

import pytest

from fleche.config import from_config
from fleche.errors import ConfigError
from fleche.storage import (
    CallMemory,
    CallPickleFile,
    ValueMemory,
    ValueMixin,
    ValuePickleFile,
    get_storage_constructor,
    is_registered_storage,
    register_storage,
)
from fleche.storage.memory import MemoryBackend


def test_the_022_names_give_our_storages(tmp_path):
    assert get_storage_constructor("memory", "value") is ValueMemory
    assert get_storage_constructor("memory", "call") is CallMemory
    assert get_storage_constructor("pickle", "call") is CallPickleFile
    values = get_storage_constructor("cloudpickle", "value")(tmp_path)
    assert type(values) is ValuePickleFile and values.serializer == "cloudpickle"


def test_unknown_names_and_kinds_are_config_errors():
    with pytest.raises(ConfigError, match="known types: .*ValueMemory"):
        get_storage_constructor("nope", "value")
    with pytest.raises(ConfigError, match="'value' or 'call'"):
        get_storage_constructor("memory", "values")


@dataclasses.dataclass(frozen=True)
class ValueScratch(ValueMixin, MemoryBackend):
    """A value storage registered by a test."""


def test_register_a_storage_and_use_it_in_a_table():
    assert not is_registered_storage(ValueScratch)
    assert register_storage("scratch", "value")(ValueScratch) is ValueScratch
    assert is_registered_storage(ValueScratch) and is_registered_storage(ValuePickleFile)
    cache = from_config({"values": {"type": "scratch"}, "calls": {"type": "memory"}})
    assert type(cache.values) is ValueScratch
    assert cache.values.to_config() == {"type": "scratch"}
    with pytest.raises(ConfigError, match="registered already"):
        register_storage("scratch", "value", factory=ValueMemory)
    register_storage("scratch", "value", factory=ValueMemory, replace=True)
    assert get_storage_constructor("scratch", "value") is ValueMemory


def test_to_config_writes_settings_that_differ_from_defaults(tmp_path):
    values = ValuePickleFile(tmp_path, compress=True, remaining_depth=0)
    assert values.to_config() == {
        "type": "ValuePickleFile",
        "root": str(tmp_path),
        "compress": True,
        "remaining_depth": 0,
    }


def test_configuration_tables_take_the_022_type_names(tmp_path):
    cache = from_config(
        {
            "values": {"type": "dill", "root": str(tmp_path / "values")},
            "calls": {"type": "pickle", "root": str(tmp_path / "calls")},
        }
    )
    assert type(cache.values) is ValuePickleFile and cache.values.serializer == "dill"
    assert type(cache.calls) is CallPickleFile
    with pytest.raises(ConfigError, match=r"'sql'.* values"):
        from_config({"values": {"type": "sql"}, "calls": {"type": "memory"}})


def _scratch_values(label: str = "") -> ValueMemory:
    return ValueMemory({"label": label})


def test_a_factory_function_takes_its_parameters_from_the_table():
    register_storage("labelled", "value", factory=_scratch_values)
    cache = from_config({"values": {"type": "labelled", "label": "x"}, "calls": {"type": "memory"}})
    assert cache.values.storage == {"label": "x"}
    with pytest.raises(ConfigError, match="no setting 'colour'"):
        from_config({"values": {"type": "labelled", "colour": 1}, "calls": {"type": "memory"}})


def test_a_broken_fleche_import_is_not_blamed_on_a_missing_extra() -> None:
    from fleche.storage.registry import import_target

    with pytest.raises(ImportError) as raised:
        import_target("fleche.no_such_module:thing", "fleche.storage.Thing", "sql")
    assert "pip install" not in str(raised.value)
    assert raised.value.name == "fleche.no_such_module"


def test_a_missing_package_names_the_extra_to_install() -> None:
    from fleche.storage.registry import import_target

    with pytest.raises(ImportError, match=r"pip install 'fleche\[sql\]'"):
        import_target("no_such_package_here:thing", "fleche.storage.Thing", "sql")
