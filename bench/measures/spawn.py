"""7. Spawn cost per service, with and without the isolation plugin: dynamod's
start-up of N services divided by N, in three configurations, and (when it
exists) bench/spawn_cost.py's mechanism-level table."""

from __future__ import annotations

import subprocess
import sys

from bench.backends import Dynamod
from bench.common import BENCH_DIR, log
from bench.measures.context import Context, finish, start
from bench.report import Row, Table
from bench.workload import sleepers

KEY = "spawn"
ISOLATION_TOML = "\n[cgroup]\n"


def isolation_problem(ctx: Context) -> str | None:
    """Why services with an isolation table cannot run here, or None."""
    b = Dynamod(ctx.scratch, ctx.tools, extra_toml=ISOLATION_TOML)
    b.prepare(sleepers(ctx.scratch.svc_sleep, 1), "isolation-check")
    p = subprocess.run(
        [ctx.tools.dynamodctl, "check", "--config-dir", str(b.dir / "etc")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if p.returncode != 0:
        first = (p.stdout + p.stderr).strip().splitlines()
        return first[0] if first else f"dynamodctl check exited {p.returncode}"
    return None


def measure(ctx: Context, row: Row, n: int, name: str, **kw: object) -> None:
    for i in range(ctx.scale.repeats + 1):
        b = ctx.make(name, **kw)
        try:
            res = start(ctx, b, sleepers(ctx.scratch.svc_sleep, n), "spawn")
        finally:
            finish(b)
        if i:
            log(f"spawn {name} {kw}: {res.t_run} {res.why}")
            row.stat(name, "ms").add(
                res.t_run * 1000 / n if res.ok and res.t_run else None, res.why
            )


def run(ctx: Context) -> Table:
    n = ctx.scale.spawn_n
    cols = [c for c in ("dynamod", "floor") if c in ctx.available]
    t = Table(KEY, f"7. Spawn cost per service (start-up of {n} services ÷ {n}, ms)", cols)
    if "dynamod" not in ctx.available:
        t.notes.append("dynamod unavailable")
        return t
    bare = t.row("no plugins loaded (`--no-plugins`)")
    plugged = t.row("plugins installed, no isolation table")
    isolated = t.row("isolation plugin: `[cgroup]` table on every service")
    measure(ctx, bare, n, "dynamod", plugins=False)
    measure(ctx, plugged, n, "dynamod")
    if "floor" in ctx.available:
        measure(ctx, bare, n, "floor")
        for r in (plugged, isolated):
            r.cells["floor"] = bare.cells["floor"]
    problem = isolation_problem(ctx)
    if problem:
        isolated.cells["dynamod"] = f"n/a: {problem}"
    else:
        measure(ctx, isolated, n, "dynamod", extra_toml=ISOLATION_TOML)
    t.notes += [
        "from launching dynamod-svmgr until the last service has exec'd, divided by N: includes "
        "the manager's start-up (imports, config loading), so it is an upper bound per service",
    ]
    script = BENCH_DIR / "spawn_cost.py"
    if script.exists():
        args = [
            "--rounds",
            str(ctx.scale.spawn_cost_rounds),
            "--big-mib",
            str(ctx.scale.spawn_cost_big_mib),
        ]
        log(f"running bench/spawn_cost.py {' '.join(args)}")
        p = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=900
        )
        if p.returncode == 0:
            t.appendix = (
                "bench/spawn_cost.py (the cost of each placement mechanism):\n\n" + p.stdout
            )
        else:
            t.notes.append(
                f"bench/spawn_cost.py failed (exit {p.returncode}): {p.stderr.strip()[-300:]}"
            )
    else:
        t.notes.append("bench/spawn_cost.py is not there: no mechanism-level table")
    return t
