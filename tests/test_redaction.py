"""A password in a store's URL never shows: not in reprs, messages, configuration tables or ``fleche config``."""

from __future__ import annotations

import pytest

from fleche import Cache
from fleche.caches.messages import where_stored
from fleche.config import to_config
from fleche.storage import Sql, ValueMemory
from fleche.storage.redaction import redact_url

from .backends import postgres_calls

PASSWORD = "s3cret-pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://bob:pw@db.example:5432/runs",
            "postgresql+psycopg://bob:***@db.example:5432/runs",
        ),
        ("postgresql://bob:p@ss@db/runs", "postgresql://bob:***@db/runs"),
        ("postgresql://:pw@db/runs", "postgresql://:***@db/runs"),
        (
            "postgresql://bob:pw@db/runs?application_name=a@b",
            "postgresql://bob:***@db/runs?application_name=a@b",
        ),
        ("postgresql://bob@db/runs", "postgresql://bob@db/runs"),
        ("sqlite:////data/a@b/calls.db", "sqlite:////data/a@b/calls.db"),
        ("runs/calls.db", "runs/calls.db"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("'postgresql://bob:pw@db/runs' holds", "'postgresql://bob:***@db/runs' holds"),
        (
            "a postgresql://a:1@x/d and sqlite:///c.db",
            "a postgresql://a:***@x/d and sqlite:///c.db",
        ),
    ],
)
def test_redact_url_hides_the_password_only(url, shown):
    assert redact_url(url) == shown


@pytest.fixture
def url_with_password(tmp_path):
    """A private schema of the test server, its URL with a password added (trust ignores it)."""
    import sqlalchemy

    url = postgres_calls(tmp_path).url
    return sqlalchemy.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def test_a_sql_store_keeps_its_password_but_never_shows_it(url_with_password):
    store = Sql(url=url_with_password)
    cache = Cache(ValueMemory(), store)
    assert store.url == url_with_password  # it still connects with it
    assert len(list(store.list())) >= 0
    for text in (repr(store), str(cache), repr(cache), where_stored(store), str(to_config(cache))):
        assert PASSWORD not in text
        assert "***" in text


def test_fleche_config_hides_the_password_of_the_active_store(
    run, monkeypatch, tmp_path, url_with_password
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fleche.toml").write_text(
        f'[runs]\ntemplate = "sql"\nurl = "{url_with_password}"\nroot = "values"\n'
    )
    code, out, err = run("--cache", "runs", "config")
    assert code == 0, err
    assert PASSWORD not in out + err
    assert "***" in out


def test_a_url_naming_calls_only_is_refused_without_showing_its_password(
    run, monkeypatch, tmp_path, url_with_password
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLECHE_CACHE", url_with_password)
    code, out, err = run("config")
    assert code != 0
    assert "holds call records only" in err
    assert PASSWORD not in out + err
