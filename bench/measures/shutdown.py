"""6. Shutdown of services that each take 100 ms to stop."""

from __future__ import annotations

import time

from bench import procs
from bench.backends import Backend
from bench.common import log
from bench.measures.context import Context, finish, start
from bench.report import Table
from bench.watch import running
from bench.workload import Workload, layered, slow_stoppers

KEY = "shutdown"
TIMEOUT = 150.0


def stop_time(ctx: Context, b: Backend, w: Workload, label: str) -> tuple[float | None, str]:
    """Seconds from the stop request until every service process and the
    manager are gone."""
    try:
        res = start(ctx, b, w, label)
        if not res.ok:
            return None, res.why
        sleeps = running(w.marker)
        shells = {s.ppid for p in sleeps if (s := procs.stat(p)) is not None}
        tracked = set(sleeps) | shells | set(b.manager_pids())
        if b.proc is not None:
            tracked.discard(b.proc.pid)  # watched through poll(): it is our child
        time.sleep(0.5)  # let every shell reach its `wait`
        t0 = time.monotonic()
        b.request_stop()
        while True:
            tracked = {p for p in tracked if procs.alive(p)}
            if not tracked and b.stopped():
                return time.monotonic() - t0, ""
            if time.monotonic() - t0 > TIMEOUT:
                return None, f"{len(tracked)} processes left after {TIMEOUT:.0f}s"
            time.sleep(0.005)
    finally:
        finish(b)


def run(ctx: Context) -> Table:
    cols = ctx.columns()
    n = ctx.scale.shutdown_n
    marker = ctx.scratch.svc_sleep
    t = Table(KEY, f"6. Shutdown of {n} services that each take 100 ms to stop (s)", cols)
    shapes = [
        ("flat", slow_stoppers(marker, n)),
        ("layered", slow_stoppers(marker, n, deps=layered(marker, n))),
    ]
    for key, w in shapes:
        row = t.row(
            f"{'no dependencies' if key == 'flat' else 'layered DAG, 10 layers'}: all stopped"
        )
        names = []
        for name in cols:
            cls = ctx.available.get(name)
            if cls is None:
                row.cells[name] = "n/a"
            elif w.has_deps and not cls.supports_deps:
                row.cells[name] = cls.deps_note
            else:
                names.append(name)
        for _ in range(ctx.scale.repeats):  # round by round (see startup)
            for name in names:
                dt, why = stop_time(ctx, ctx.make(name), w, f"stop-{key}")
                log(f"shutdown {name} {key}: {dt} {why}")
                row.stat(name, "s").add(dt, why)
    t.notes += [
        "each service is a shell that, on SIGTERM, kills its `sleep`, sleeps 0.1 s and exits; "
        "time from the stop request (dynamod and supervisord: SIGTERM; s6: `s6-svscanctl -t`; "
        "runit: SIGHUP to runsvdir) until every service process and the manager are gone",
        "a sequential stopper needs N x 0.1 s; the layered graph needs at least 10 x 0.1 s "
        "(dependents stop before what they require)",
        "supervisord stops one process group at a time, and every `[program:x]` is its own group",
    ]
    return t
