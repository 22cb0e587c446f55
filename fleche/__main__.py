"""``python -m fleche``: the ``fleche`` command."""

from .cli import main

raise SystemExit(main())
