"""1. Start-up of N long-running trivial services."""

from __future__ import annotations

from bench.common import log
from bench.measures.context import Context, finish, start
from bench.report import Table
from bench.workload import sleepers

KEY = "startup"


def run(ctx: Context) -> Table:
    cols = ctx.columns()
    t = Table(
        KEY, "1. Start-up of N trivial services (s = seconds from launching the manager)", cols
    )
    for n in ctx.scale.startup_n:
        running = t.row(f"N={n}: all processes running")
        status = t.row(f"N={n}: manager's status says so")
        cpu = t.row(f"N={n}: manager CPU until then")
        for name in cols:
            if name not in ctx.available:
                for r in (running, status, cpu):
                    r.cells[name] = "n/a"
        # Round by round, every backend once per round: a noisy moment of the
        # machine then hits all of them rather than one backend's block.
        for i in range(ctx.scale.repeats + 1):  # the first round warms caches
            for name in [c for c in cols if c in ctx.available]:
                b = ctx.make(name)
                try:
                    res = start(ctx, b, sleepers(ctx.scratch.svc_sleep, n), f"start{n}")
                finally:
                    finish(b)
                if i == 0:
                    continue
                log(
                    f"start-up {name} N={n}: run {res.t_run} status {res.t_status} cpu {res.cpu_status} {res.why}"
                )
                running.stat(name, "s").add(res.t_run if res.ok else None, res.why)
                if name == "floor":
                    status.cells[name] = "(no status)"
                    cpu.stat(name, "CPU s").add(res.cpu_run if res.ok else None, res.why)
                else:
                    status.stat(name, "s").add(res.t_status if res.ok else None, res.why)
                    cpu.stat(name, "CPU s").add(res.cpu_status if res.ok else None, res.why)
    t.notes += [
        "running: the kernel's exec event of the last service (every service is `sleep` "
        "exec'd through a symlink in the scratch directory); status: polled from that moment "
        "until one query of the manager's own status shows every service up "
        "(dynamod ListServices, supervisord getAllProcessInfo, s6-svstat per service, one `sv status`)",
        "manager CPU: user+system seconds of the manager's own processes at the status time "
        "(s6 and runit: the scanner plus every s6-supervise / runsv)",
        "supervisord reports RUNNING only after `startsecs` (default 1 s) — that is its default semantics",
        "s6 and runit start each service through a `#!/bin/sh` run script that execs it",
        *ctx.missing_note(),
    ]
    return t
