"""A small scientific workflow run twice: compute, then answer from the store.

``python -m fleche.demo`` (or ``fleche demo``) sweeps a heat-diffusion
simulation over a few diffusivities, analyses each run, and shows the time
of a computed pass beside a cached one, the query table and short digests.
It uses the embedded default store in the working directory.
"""

from __future__ import annotations

import time

import numpy as np

from fleche import active_cache, fleche


@fleche(version="1")
def diffuse(diffusivity: float, steps: int = 4000, cells: int = 200) -> np.ndarray:
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
    return {"peak": float(profile.max()), "width": float(np.sqrt(((x - centre) ** 2 * profile).sum() / mass))}


def sweep(diffusivities: list[float]) -> dict[float, dict[str, float]]:
    """The whole workflow: one simulation and one analysis per diffusivity."""
    return {d: spread(diffuse(d)) for d in diffusivities}


def main() -> None:
    diffusivities = [0.05, 0.1, 0.2, 0.3]
    store = active_cache()
    print(f"store: {store!r}\n")
    for attempt in ("first", "second"):
        start = time.perf_counter()
        results = sweep(diffusivities)
        print(f"{attempt} pass: {time.perf_counter() - start:.3f} s")
    print()
    for d, r in results.items():
        print(f"  diffusivity {d:<5} peak {r['peak']:7.3f}  width {r['width']:6.2f}")
    table = diffuse.query().table()
    columns = ["key", "diffusivity", "steps", "runtime.walltime"]
    table["key"] = [store.shrink(k) for k in table["key"]]
    print("\nstored simulations (diffuse.query().table()):")
    print(table[columns].sort_values("diffusivity").to_string(index=False))
    last = spread.call(diffuse(diffusivities[-1]))
    print(f"\nthe last analysis is call {store.shrink(last.key())}; its result is value "
          f"{store.shrink(last.digested_call.result)}")


if __name__ == "__main__":
    main()
