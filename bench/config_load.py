#!/usr/bin/env python3
"""How long ``load_config`` takes on large and deep trees (issue 13: a
5,000-deep supervisor chain took 8.4 s to check, quadratically).

    .venv/bin/python bench/config_load.py [--sizes 1000,5000] [--repeats 3]

For each shape and size N, writes a tree under a temporary directory and
prints the median wall time of ``load_config`` (plugins not loaded) and the
ratio to the smallest size: linear growth shows as a ratio close to the
ratio of the sizes (5 for 1,000 -> 5,000).

Shapes: a chain of N supervisors (each the parent of the next) with one
service at the bottom; a chain of N services (each requires the previous);
the same chain closed into a ring (one dependency cycle through all N); N
independent services.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dynamod.config.loader import load_config

SERVICE = '[service]\nname = "{name}"\nexec = ["/bin/true"]\n'


def supervisor_chain(root: Path, n: int) -> None:
    for i in range(n):
        parent = f'parent = "s{i - 1}"\n' if i else ""
        (root / "supervisors" / f"s{i}.toml").write_text(f'[supervisor]\nname = "s{i}"\n{parent}')
    (root / "services" / "leaf.toml").write_text(SERVICE.format(name="leaf") + f'supervisor = "s{n - 1}"\n')


def service_chain(root: Path, n: int, ring: bool = False) -> None:
    for i in range(n):
        dep = f"s{(i - 1) % n}" if (i or ring) else None
        deps = f'[dependencies]\nrequires = ["{dep}"]\n' if dep else ""
        (root / "services" / f"s{i}.toml").write_text(SERVICE.format(name=f"s{i}") + deps)


def independent(root: Path, n: int) -> None:
    for i in range(n):
        (root / "services" / f"s{i}.toml").write_text(SERVICE.format(name=f"s{i}"))


SHAPES: dict[str, Callable[[Path, int], None]] = {
    "supervisor chain": supervisor_chain,
    "service chain": service_chain,
    "service ring": lambda root, n: service_chain(root, n, ring=True),
    "independent": independent,
}


def measure(shape: Callable[[Path, int], None], n: int, repeats: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "services").mkdir()
        (root / "supervisors").mkdir()
        shape(root, n)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            load_config(root)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'shape':<18}" + "".join(f"{f'N={n}':>12}" for n in sizes) + f"{'ratio':>8}")
    for name, shape in SHAPES.items():
        medians = [measure(shape, n, args.repeats) for n in sizes]
        cells = "".join(f"{m * 1000:>10.0f}ms" for m in medians)
        print(f"{name:<18}{cells}{medians[-1] / medians[0]:>8.1f}")


if __name__ == "__main__":
    main()
