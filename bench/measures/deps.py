"""2. Dependency-ordered start-up: a layered DAG and a random DAG. Only dynamod
and the floor (a topological fork-exec loop) have dependencies; the peers
are marked n/a."""

from __future__ import annotations

from bench.common import log
from bench.measures.context import Context, finish, start
from bench.report import Table
from bench.workload import Workload, layered, random_dag, sleepers

KEY = "deps"


def run(ctx: Context) -> Table:
    cols = ctx.columns()
    n = ctx.scale.dag_n
    marker = ctx.scratch.svc_sleep
    t = Table(KEY, f"2. Dependency-ordered start-up of {n} services (s from launch)", cols)
    shapes: list[tuple[str, Workload]] = [
        ("no dependencies", sleepers(marker, n)),
        ("layered", layered(marker, n)),
        ("random", random_dag(marker, n)),
    ]
    for key, w in shapes:
        running = t.row(f"{w.label}: all running")
        status = t.row(f"{w.label}: status says so")
        names = []
        for name in cols:
            cls = ctx.available.get(name)
            if cls is None:
                running.cells[name] = status.cells[name] = "n/a"
            elif not w.has_deps and not cls.supports_deps:
                running.cells[name] = status.cells[name] = "see table 1"
            elif w.has_deps and not cls.supports_deps:
                running.cells[name] = status.cells[name] = cls.deps_note
            else:
                names.append(name)
        for i in range(ctx.scale.repeats + 1):  # round by round (see startup)
            for name in names:
                b = ctx.make(name)
                try:
                    res = start(ctx, b, w, f"dag-{key}")
                finally:
                    finish(b)
                if i == 0:
                    continue
                log(f"deps {name} {key}: run {res.t_run} status {res.t_status} {res.why}")
                running.stat(name, "s").add(res.t_run if res.ok else None, res.why)
                if name == "floor":
                    status.cells[name] = "(no status)"
                else:
                    status.stat(name, "s").add(res.t_status if res.ok else None, res.why)
    t.notes += [
        "layered: 10 layers, each service requires every service of the layer before "
        f"({shapes[1][1].edges()} edges); random: each service requires up to 4 random earlier ones "
        "(fixed seed)",
        'readiness is "process started" (dynamod\'s `none`), so the critical path is a chain of '
        "spawns; the floor spawns in topological order with posix_spawn, which returns once the "
        "child has exec'd, and so meets every dependency by construction",
        "the no-dependency row is the same N for comparison: the cost of the graph is the difference",
    ]
    return t
