"""Developer sessions: tests, lint, docs and benchmarks."""

import nox

nox.options.sessions = ["tests", "lint"]


def install_project(session: nox.Session) -> None:
    """Install fleche with every extra, unless run with ``--no-venv`` (as .ci/run does)."""
    if session.venv_backend != "none":
        session.install("-e", ".[all]")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (PostgreSQL tests need FLECHE_TEST_POSTGRES_URL; see .ci/start-postgres)."""
    install_project(session)
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the package, tests and benchmarks."""
    session.install("ruff")
    session.run("ruff", "check", "fleche", "tests", "benchmarks")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation: its examples as tests, then the HTML with warnings as errors."""
    install_project(session)
    session.run("pytest", "-q", "tests/test_docs.py")
    session.run("python", "-m", "sphinx", "-W", "-b", "html", "docs", "docs/_build/html")


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark script, each printing its table with same-run references."""
    install_project(session)
    for script in sorted(__import__("pathlib").Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script))
