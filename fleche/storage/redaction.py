"""Passwords written into store URLs, kept out of what fleche shows or writes.

A SQLAlchemy URL may carry a password (``postgresql://user:pw@host/db``).
Reprs, messages, ``fleche config`` and configuration tables show the URL
with the password replaced by ``***``; only the storage object itself
keeps it, to connect.  A password is better kept out of URLs altogether:
PostgreSQL's client reads ``PGPASSWORD`` and ``~/.pgpass``.
"""

from __future__ import annotations

import re

__all__ = ["HIDDEN", "redact_url"]

#: What a password is shown as.
HIDDEN = "***"

# scheme://user:password@ -- the password is everything up to the last "@" of the authority.
_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@?#\s'\"]*):[^/?#\s'\"]*@")


def redact_url(text: str) -> str:
    """``text`` (a URL, or a message holding some) with each URL's password shown as ``***``."""
    if "@" not in text:  # the usual case: a path, or a URL without credentials
        return text
    return _PASSWORD.sub(lambda m: f"{m['head']}:{HIDDEN}@", text)
