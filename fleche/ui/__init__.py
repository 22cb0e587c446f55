"""``fleche ui``: browse a store in a web browser.

:func:`create_app` builds a small Flask application over any cache:
the functions it holds (``/``), the calls of one function as a table that
filters by argument values (``/f/<module>:<name>``), a call with previews
of its values and its lineage drawn as a graph (``/c/<digest>``), a value
and its downloads (``/v/<digest>``).  Pages are rendered on the server
from the templates shipped in this package; no asset comes from the
network.  The application only reads unless it is built with
``allow_writes=True``.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
