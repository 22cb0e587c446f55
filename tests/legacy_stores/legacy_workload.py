"""Decorated functions that both the fleche 0.22 release and ours can import.

The 0.22 release runs :func:`run` to fill a store (``write_store.py``); the
tests import the store into ours and make the same calls again, which must
all be hits: ``COMPUTED`` stays empty.
"""

import dataclasses

import numpy
import pandas

from fleche import fleche, tags

#: Every call that really ran here, as ``(function, arguments)``.
COMPUTED: list = []


@fleche()
def scale(x, factor=2):
    COMPUTED.append(("scale", x, factor))
    return x * factor


@fleche()
def describe(name, values, options):
    COMPUTED.append(("describe", name))
    return {"name": name.upper(), "count": len(values), "options": sorted(options)}


@fleche()
def normalise(array):
    COMPUTED.append(("normalise",))
    return array / array.sum()


@fleche()
def table(rows):
    COMPUTED.append(("table", rows))
    return pandas.DataFrame({"i": list(range(rows)), "square": [i * i for i in range(rows)]})


@fleche(version=3)
def versioned(text):
    COMPUTED.append(("versioned", text))
    return text[::-1]


@dataclasses.dataclass
class Point:
    x: int
    path: list


@fleche()
def shift(point, by=1):
    COMPUTED.append(("shift", point.x))
    return Point(point.x + by, point.path + [by])


@fleche(hash_module=False)
def moved(x):
    COMPUTED.append(("moved", x))
    return -x


@fleche(hash_code=True)
def coded(x):
    COMPUTED.append(("coded", x))
    return x + 0.5


#: The calls :func:`run` makes, as ``(function, args, kwargs)``.
CALLS = [
    (scale, (1,), {}),
    (scale, (2,), {"factor": 5}),
    (scale, ("ab",), {}),
    (describe, ("run", [1, 2, 3], {"solver": "cg", "tol": 1e-6}), {}),
    (describe, ("nested", [[1, 2], [3]], {"deep": {"a": [1, 2]}}), {}),
    (normalise, (numpy.arange(1.0, 7.0).reshape(2, 3),), {}),
    (table, (4,), {}),
    (versioned, ("hello",), {}),
    (shift, (Point(1, [2, 3]),), {}),
    (moved, (7,), {}),
    (coded, (1,), {}),
]


def run() -> None:
    """Make every call of :data:`CALLS` under the active cache, tagged by their position."""
    for position, (function, args, kwargs) in enumerate(CALLS):
        with tags(position=position, parity="even" if position % 2 == 0 else "odd"):
            function(*args, **kwargs)
