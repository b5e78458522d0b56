"""Where dynamod-svmgr spends its start-up: cProfile of N services, from
launch until the last service runs (bench/profile_svmgr.py)."""

from __future__ import annotations

import io
import os
import pstats
import signal
import time

from bench.backends import Backend, Dynamod
from bench.common import BENCH_DIR, REPO, RESULTS_DIR, log
from bench.measures.context import Context, finish, start
from bench.report import Table
from bench.workload import sleepers

KEY = "profile"
TOP = 25


def run(ctx: Context) -> Table:
    n = ctx.scale.profile_n
    t = Table(KEY, f"Profile: dynamod-svmgr start-up of {n} services under cProfile", ["dynamod"])
    if "dynamod" not in ctx.available:
        t.notes.append("dynamod unavailable")
        return t
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"svmgr-startup-{n}.prof"
    out.unlink(missing_ok=True)

    def argv(b: Backend) -> list[str]:
        return [b.tools.python, str(BENCH_DIR / "profile_svmgr.py"), str(out), *b.command()[1:]]

    b = Dynamod(ctx.scratch, ctx.tools)
    try:
        res = start(ctx, b, sleepers(ctx.scratch.svc_sleep, n), "profile", argv=argv)
        t.row("under cProfile: all running").stat("dynamod", "s").add(
            res.t_run if res.ok else None, res.why
        )
        assert b.proc is not None
        os.kill(b.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        size = -1
        while time.monotonic() < deadline:  # until the dump is complete
            now = out.stat().st_size if out.exists() else -1
            if now > 0 and now == size:
                break
            size = now
            time.sleep(0.2)
    finally:
        finish(b)
    if not out.exists():
        t.notes.append("no profile was written")
        return t
    for sort in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(str(out), stream=buf).sort_stats(sort).print_stats(TOP)
        text = buf.getvalue()
        body = text[text.find("   ncalls") :] if "   ncalls" in text else text
        body = body.replace(str(REPO) + "/", "")
        t.appendix += (
            f"Top {TOP} by {sort} ({out.relative_to(REPO)}):\n\n```\n{body.rstrip()}\n```\n\n"
        )
    log(f"profile written to {out}")
    return t
