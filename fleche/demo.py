"""A small scientific workflow run twice: compute, then answer from the store.

``fleche demo`` (or ``python -m fleche.demo``) sweeps a heat-diffusion
simulation over a few diffusivities, analyses each run, fits the diffusion
law to the analyses, and shows the time of a computed pass beside a cached
one, the query table, short digests and the lineage of the fit.  It uses
the embedded default store in the working directory (``./.fleche``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from fleche import active_cache, fleche

if TYPE_CHECKING:
    from rich.console import Console

DIFFUSIVITIES = [0.05, 0.1, 0.2, 0.3]


@fleche(version="1")
def diffuse(diffusivity: float, steps: int = 20000, cells: int = 1000) -> np.ndarray:
    """Explicit finite differences for the 1-D heat equation from a hot centre."""
    u = np.zeros(cells)
    u[cells // 2 - 5 : cells // 2 + 5] = 100.0
    for _ in range(steps):
        u[1:-1] += diffusivity * (u[2:] - 2 * u[1:-1] + u[:-2])
    return u


@fleche(version="1")
def spread(profile: np.ndarray) -> dict[str, float]:
    """Width and peak of a temperature profile."""
    x = np.arange(profile.size)
    mass = profile.sum()
    centre = (x * profile).sum() / mass
    return {
        "peak": float(profile.max()),
        "width": float(np.sqrt(((x - centre) ** 2 * profile).sum() / mass)),
    }


@fleche(version="1")
def fit(diffusivities: list[float], analyses: list[dict[str, float]]) -> dict[str, float]:
    """The diffusion law: the squared width grows linearly with the diffusivity."""
    slope, intercept = np.polyfit(diffusivities, [a["width"] ** 2 for a in analyses], 1)
    return {"slope": float(slope), "intercept": float(intercept)}


def sweep(diffusivities: list[float]) -> dict[str, float]:
    """The whole workflow: one simulation and one analysis per diffusivity, then the fit."""
    return fit(diffusivities, [spread(diffuse(d)) for d in diffusivities])


def main(console: Console | None = None) -> dict[str, float]:
    """Run the workflow twice on the active cache and show what the store knows."""
    say: Any = (
        print
        if console is None
        else (lambda text="": console.print(text, markup=False, highlight=False))
    )
    store = active_cache()
    say(f"store: {_describe(store)}\n")
    for attempt in ("first", "second"):
        stored = (
            all(diffuse.contains(d) for d in DIFFUSIVITIES)
            and fit.contains(DIFFUSIVITIES, [spread(diffuse(d)) for d in DIFFUSIVITIES])
            if attempt == "first"
            else True
        )
        start = time.perf_counter()
        result = sweep(DIFFUSIVITIES)
        how = "answered from the store" if stored else "computed"
        say(f"{attempt + ' pass:':13}{time.perf_counter() - start:8.4f} s  ({how})")
    say(f"\nwidth² = {result['slope']:.1f} × diffusivity + {result['intercept']:.1f}")

    table = diffuse.query().table()
    table["key"] = [store.shrink(k) for k in table["key"]]
    say("\nstored simulations (diffuse.query().table()):")
    say(
        table[["key", "diffusivity", "steps", "runtime.walltime"]]
        .sort_values("diffusivity")
        .to_string(index=False)
    )

    call = fit.record(DIFFUSIVITIES, [spread(diffuse(d)) for d in DIFFUSIVITIES])
    value = call.digested_call.result
    say(f"\nthe fit is call {store.shrink(call.key())}; its result is value {store.shrink(value)}")
    say(f"(try: fleche show {store.shrink(value)}, fleche lineage {store.shrink(value)} --dot)")
    say("\nlineage of the fit (store.lineage(value)):")
    graph = store.lineage(value)
    if console is None:
        print(graph)
    else:
        console.print(graph.rich())
    return result


def _describe(store: Any) -> str:
    """The store as its configuration table (its repr if it has none)."""
    from fleche.config import to_config
    from fleche.errors import ConfigError

    try:
        return str(to_config(store))
    except ConfigError:
        return repr(store)


if __name__ == "__main__":
    main()
