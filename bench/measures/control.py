"""3. Control latency: the whole-process wall time of one status call with
many services loaded."""

from __future__ import annotations

import subprocess
import time

from bench.backends import Backend, Dynamod
from bench.common import Stat, log
from bench.measures.context import Context, finish, start
from bench.report import Table
from bench.workload import sleepers

KEY = "control"


def run_once(
    argv: list[str], env: dict[str, str] | None = None, expect: int = 0
) -> tuple[float | None, str]:
    """Wall milliseconds of one run of ``argv``, or None and why when it
    did not exit with ``expect``."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60)
    dt = (time.perf_counter() - t0) * 1000
    if p.returncode != expect:
        return None, f"exit {p.returncode}: {p.stderr.decode(errors='replace').strip()[:200]}"
    return dt, ""


def timed(argv: list[str], calls: int) -> Stat:
    """Wall milliseconds of ``calls`` runs of ``argv`` (after 3 warm-ups)."""
    s = Stat("ms")
    for i in range(calls + 3):  # three warm-up calls
        dt, why = run_once(argv)
        if dt is None:
            s.add(None, why)
        elif i >= 3:
            s.add(dt)
    return s


def list_argv(b: Backend) -> list[str] | None:
    if isinstance(b, Dynamod):
        return b.list_argv()
    if b.name == "supervisord":
        return [b.tools.supervisorctl, "-c", str(b.dir / "supervisord.conf"), "status"]
    if b.name == "runit":
        return ["sv", "status", *b.service_dirs()]  # type: ignore[attr-defined]
    if b.name == "s6":
        return ["/bin/sh", "-c", 'for d do s6-svstat "$d"; done', "sh", *b.service_dirs()]  # type: ignore[attr-defined]
    return None


def run(ctx: Context) -> Table:
    cols = ctx.columns()
    n, calls = ctx.scale.loaded_n, ctx.scale.control_calls
    t = Table(
        KEY, f"3. Control latency with {n} services loaded (whole process, {calls} calls)", cols
    )
    one = t.row("status of one service")
    every = t.row("status of every service")
    for name in cols:
        if name not in ctx.available:
            one.cells[name] = every.cells[name] = "n/a"
            continue
        if name == "floor":
            one.cells[name] = timed(["/bin/true"], calls)
            every.cells[name] = "—"
            continue
        b = ctx.make(name)
        try:
            res = start(ctx, b, sleepers(ctx.scratch.svc_sleep, n), "control")
            if not res.ok:
                one.stat(name, "ms").add(None, res.why)
                continue
            target = f"s{n // 2:04d}"
            argv = b.status_argv(target)
            assert argv is not None
            one.cells[name] = timed(argv, calls)
            if (argv := list_argv(b)) is not None:
                every.cells[name] = timed(argv, calls)
            log(f"control {name}: {one.cells[name]} / {every.cells[name]}")
        finally:
            finish(b)
    t.notes += [
        "one service: `dynamodctl status X`, `supervisorctl status X`, `s6-svstat DIR`, `sv status DIR`; "
        "every service: `dynamodctl list --json`, `supervisorctl status`, a shell loop of `s6-svstat` "
        "(s6 has no bulk query), one `sv status DIR...`",
        "floor column: `/bin/true`, the cost of running any process at all",
        "after three warm-up calls; output captured through a pipe as a script would",
    ]
    return t
