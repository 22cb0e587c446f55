"""Fill a store with the fleche 0.22 release: ``python write_store.py CONFIG_JSON``.

Run by the 0.22 release's own interpreter (never ours); CONFIG_JSON is a
cache configuration of that release, e.g. ``{"template": "pickle", "root": "store"}``.
"""

import json
import sys

import legacy_workload

from fleche import cache
from fleche.config import cache_from_config

with cache(cache_from_config(json.loads(sys.argv[1]))):
    legacy_workload.run()
