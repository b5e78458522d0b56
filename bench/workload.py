"""The workloads: the same services, written by each backend in its own
configuration format.

Every long-running service ends up as ``svc-sleep 1000000 I`` (the run's
symlink to sleep(1), with a unique argument), so "running" is the same
observable fact for every backend: the process has exec'd that program.
"""

from __future__ import annotations

import random
import shlex
from dataclasses import dataclass, field

LONG = "1000000"


@dataclass(frozen=True)
class Service:
    name: str
    argv: tuple[str, ...]
    requires: tuple[str, ...] = ()


@dataclass
class Workload:
    label: str
    services: list[Service]
    # How many processes with argv[0] == marker mean "all up" (0: not counted).
    expect: int
    marker: str
    notes: list[str] = field(default_factory=list)

    @property
    def has_deps(self) -> bool:
        return any(s.requires for s in self.services)

    def layers(self) -> list[list[Service]]:
        """Topological layers: a service is in the layer after the deepest of
        its requirements (layer sizes bound what can start in parallel)."""
        depth: dict[str, int] = {}
        for s in self.services:  # services are listed in a topological order
            depth[s.name] = 1 + max((depth[r] for r in s.requires), default=-1)
        out: list[list[Service]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for s in self.services:
            out[depth[s.name]].append(s)
        return out

    def edges(self) -> int:
        return sum(len(s.requires) for s in self.services)


def _sleeper(marker: str, i: int) -> tuple[str, ...]:
    return (marker, LONG, str(i))


def sleepers(marker: str, n: int) -> Workload:
    """N independent long-running trivial services."""
    return Workload(
        f"{n} sleepers",
        [Service(f"s{i:04d}", _sleeper(marker, i)) for i in range(n)],
        n,
        marker,
    )


def layered(marker: str, n: int, layers: int = 10) -> Workload:
    """``layers`` layers of n/layers services; each requires every service of
    the layer before it."""
    per = max(1, n // layers)
    services: list[Service] = []
    prev: list[str] = []
    for layer in range(layers):
        names = [f"l{layer:02d}-{j:03d}" for j in range(per)]
        services += [
            Service(name, _sleeper(marker, layer * per + j), tuple(prev))
            for j, name in enumerate(names)
        ]
        prev = names
    return Workload(f"layered DAG: {layers} x {per}", services, len(services), marker)


def random_dag(marker: str, n: int, seed: int = 7, max_requires: int = 4) -> Workload:
    """Service i requires up to ``max_requires`` services chosen at random
    among those before it (a fixed seed: the same graph every run)."""
    rng = random.Random(seed)
    services: list[Service] = []
    for i in range(n):
        k = min(i, rng.randint(0, max_requires))
        reqs = sorted(rng.sample(range(i), k)) if k else []
        services.append(Service(f"r{i:04d}", _sleeper(marker, i), tuple(f"r{j:04d}" for j in reqs)))
    w = Workload(f"random DAG: {n} services", services, n, marker)
    w.label += f", {w.edges()} edges, critical path {len(w.layers())}"
    return w


def slow_stoppers(
    marker: str, n: int, stop_seconds: float = 0.1, deps: Workload | None = None
) -> Workload:
    """Services that take ``stop_seconds`` to stop after SIGTERM: a shell
    runs the marker sleep in the background and, on TERM, kills it, sleeps
    and exits. With ``deps``, the same shape (names, requires) as that
    workload."""
    trap = f"kill $! 2>/dev/null; sleep {stop_seconds}; exit 0"
    shape = deps.services if deps is not None else [Service(f"s{i:04d}", ()) for i in range(n)]
    services = [
        Service(
            s.name,
            ("/bin/sh", "-c", f"trap {shlex.quote(trap)} TERM; {marker} {LONG} {i} & wait"),
            s.requires,
        )
        for i, s in enumerate(shape)
    ]
    return Workload(
        f"{len(services)} services stopping in {stop_seconds:g}s", services, len(services), marker
    )


def crasher(marker_file: str) -> Workload:
    """One service that exits with status 1 at once, forever; it appends the
    system uptime to ``marker_file`` at every start (a shell builtin: no
    extra exec)."""
    script = f"read up _ < /proc/uptime; echo $up >> {shlex.quote(marker_file)}; exit 1"
    return Workload(
        "a service that exits at once", [Service("crasher", ("/bin/sh", "-c", script))], 0, ""
    )
