"""Every example in the documentation runs.

For each page of ``docs/``, in a fresh working directory: the ``>>>``
examples run as doctests (ELLIPSIS, NORMALIZE_WHITESPACE), then every
``$ fleche ...`` line of a ``console`` block runs through ``main`` and must
succeed, every ``toml`` block must be a valid configuration (one with a
caption naming another file only valid TOML), and every ``python`` block,
code for another package's files, must compile.  The
Sphinx build itself (``nox -s docs``, warnings as errors) is not run here:
it takes half a minute.
"""

from __future__ import annotations

import contextvars
import doctest
import re
import shlex
import tomllib
from pathlib import Path

import pytest

import fleche.caches.core
from fleche.cli import main
from fleche.config import load_configuration

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.rst"))
_BLOCK = re.compile(r"^\.\. code-block:: (\w+)\n((?:\n|[ \t]+.*\n)+)", re.MULTILINE)
_ENVIRONMENT = ("FLECHE_CACHE", "FLECHE_CONFIG", "FLECHE_SECRET_KEY", "FLECHE_TEST_POSTGRES_URL")


def blocks(page: Path, language: str) -> list[tuple[str, str]]:
    """``(caption, dedented text)`` of every ``.. code-block:: <language>`` of a page."""
    found = []
    for kind, body in _BLOCK.findall(page.read_text(encoding="utf-8")):
        if kind != language:
            continue
        lines = body.split("\n")
        caption = ""
        while lines and (not lines[0].strip() or lines[0].strip().startswith(":")):
            option = lines.pop(0).strip()
            if option.startswith(":caption:"):
                caption = option[len(":caption:") :].strip()
        indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
        found.append((caption, "\n".join(x[indent:] for x in lines).strip() + "\n"))
    return found


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(
        fleche.caches.core, "_MEMORY", None
    )  # each page gets a fresh cache("memory")
    (tmp_path / "fleche.toml").write_text(
        "root = true\n"
    )  # no configuration from above or the user's
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_pages_are_found():
    assert {"index.rst", "getting-started.rst", "cli.rst"} <= {p.name for p in PAGES}
    index = (DOCS / "index.rst").read_text()
    for page in PAGES:
        assert page.name == "index.rst" or f"   {page.stem}\n" in index, (
            f"{page.name} is not in the toctree"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_examples_run(page, workdir, capsys):
    # A fresh context: a cache activated by one page (or an earlier test) does not leak in.
    result = contextvars.Context().run(
        doctest.testfile,
        str(page),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        encoding="utf-8",
        raise_on_error=False,
    )
    report = capsys.readouterr().out
    assert result.failed == 0, report
    for _, block in blocks(page, "console"):
        for line in block.splitlines():
            if line.startswith("$ fleche "):
                argv = shlex.split(line[len("$ fleche ") :].split(" #")[0])
                code = contextvars.copy_context().run(main, argv)
                output = capsys.readouterr()
                assert code == 0, f"{line!r} exited {code}: {output.err}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_configuration_examples_are_valid(page, tmp_path):
    for n, (caption, block) in enumerate(blocks(page, "toml")):
        if caption:  # another file (pyproject.toml): only valid TOML
            tomllib.loads(block)
            continue
        directory = tmp_path / str(n)
        directory.mkdir()
        text = block if "root" in tomllib.loads(block) else "root = true\n" + block
        (directory / "fleche.toml").write_text(text)
        load_configuration(directory)  # raises ConfigError on any unknown key, template or name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_code_for_other_files_compiles(page):
    for n, (_, block) in enumerate(blocks(page, "python")):
        compile(block, f"{page.name}[python block {n}]", "exec")
