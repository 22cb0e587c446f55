"""One registry of names and one resolver: every way of naming a store reaches the same cache."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from fleche import Cache, CacheStack, ConfigError, cache, fleche, from_config, open_cache
from fleche.cli.context import Context
from fleche.config import cache_from_config, load_cache_config, register_storage
from fleche.registry import CACHE_TYPES, RESERVED, TEMPLATES, cache_type, register_cache_type
from fleche.storage.registry import spelled_out


@pytest.fixture(autouse=True)
def project(isolated_config: Path) -> Path:
    """A working directory whose fleche.toml names a sql store ``project`` under ``store``."""
    work = Path.cwd()
    (work / "fleche.toml").write_text('[project]\ntemplate = "sql"\nroot = "store"\n')
    return work


@pytest.fixture
def expected(project: Path) -> Cache:
    """The store every spelling below names, built afresh from its table."""
    return from_config({"template": "sql", "root": str(project / "store")})


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param("project", id="name"),
        pytest.param("./store", id="relative path"),
        pytest.param("ABSOLUTE", id="path object"),
        pytest.param({"template": "sql", "root": "store"}, id="table"),
        pytest.param(
            {
                "values": {"type": "pickle", "root": "store/values"},
                "calls": {"type": "sql", "url": "store/calls.db"},
            },
            id="0.22 table",
        ),
    ],
)
def test_every_spelling_resolves_to_an_equal_cache(spec, project, expected):
    spec = project / "store" if spec == "ABSOLUTE" else spec
    assert open_cache(spec) == expected


def test_a_url_resolves_to_the_table_with_that_url(project):
    url = f"sqlite:///{project / 'store' / 'calls.db'}"
    assert open_cache(url) == from_config(
        {"template": "sql", "root": str(project / "store"), "url": url}
    )


def test_a_0_22_list_is_a_stack_of_what_its_items_resolve_to(expected):
    stack = open_cache([{"template": "memory"}, {"template": "sql", "root": "store"}])
    assert isinstance(stack, CacheStack) and stack.layers[1] == expected


def test_every_entry_point_goes_through_the_resolver(project, expected):
    opened = open_cache("project")
    with cache("project") as active:
        assert active is opened

    @fleche(cache="project")
    def double(x):
        return 2 * x

    assert double(3) == 6 and double.cache is opened
    assert Cache.from_config({"template": "sql", "root": "store"}) == expected
    assert cache_from_config({"template": "sql", "root": "store"}) == expected
    assert load_cache_config("project") is opened
    assert Context(argparse.Namespace(cache="project")).cache is opened
    assert Context(argparse.Namespace(cache="./store")).cache == expected


def test_reserved_names_and_templates_are_registered_once():
    assert set(RESERVED) == {"memory", "void"}
    assert {"memory", "void", "pickle", "sql", "hdf5", "stack", "pool"} <= set(TEMPLATES)
    assert open_cache("memory") is open_cache("memory")
    assert spelled_out("dill", "call") == {"type": "CallPickleFile", "serializer": "dill"}
    assert spelled_out("ValuePickleFile", "value") is None


def test_an_unknown_name_says_which_names_and_files_there_are(project):
    with pytest.raises(ConfigError) as info:
        open_cache("nope")
    message = str(info.value)
    assert "unknown cache name 'nope'" in message and "project" in message
    assert str(project / "fleche.toml") in message


def test_an_unknown_type_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown cache type 'nope'; known types: .*ssh"):
        from_config({"type": "nope"})
    with pytest.raises(ConfigError, match="unknown storage type 'Nope' for values; known types"):
        from_config({"values": {"type": "Nope"}, "calls": {"type": "CallMemory"}})
    with pytest.raises(ConfigError, match="'Sql' is a call storage only"):
        from_config({"values": {"type": "Sql"}, "calls": {"type": "CallMemory"}})


def test_a_missing_extra_is_named_with_the_install_command():
    register_storage("test-needs-extra", "fleche_no_such_package:Thing", "hdf5", replace=True)
    table = {"values": {"type": "test-needs-extra"}, "calls": {"type": "CallMemory"}}
    with pytest.raises(
        ImportError, match=r"needs fleche_no_such_package.*pip install 'fleche\[hdf5\]'"
    ):
        from_config(table)


def test_cache_types_may_be_registered_by_where_to_import_them():
    register_cache_type("test-lazy-ssh", "fleche.remote:from_table", replace=True)
    try:
        from fleche.remote import SshCache

        assert from_config({"type": "test-lazy-ssh", "host": "far"}) == SshCache("far")
        assert cache_type("test-lazy-ssh") is CACHE_TYPES["test-lazy-ssh"]  # imported once
    finally:
        del CACHE_TYPES["test-lazy-ssh"]
    with pytest.raises(ConfigError, match="registered already"):
        register_cache_type("ssh", "fleche.remote:from_table")


def test_importing_fleche_does_not_import_the_remote_client():
    code = "import sys, fleche; print('fleche.remote' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
