"""Where dynamod-svmgr spends its start-up: cProfile of N services, from
launch until the last service runs (bench/profile_svmgr.py)."""

from __future__ import annotations

import io
import os
import pstats
import signal
import subprocess
import sysconfig
import time

from bench.backends import Backend, Dynamod
from bench.common import BENCH_DIR, REPO, RESULTS_DIR, Stat, log
from bench.measures.context import Context, finish, start
from bench.report import Table
from bench.workload import sleepers

KEY = "profile"
TOP = 25
RSS = "print(int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]))"
# dynamod.svmgr.main first, as in svmgr: it imports asyncio without ssl.
SVMGR_IMPORTS = "import dynamod.svmgr.main, dynamod.svmgr.manager, dynamod.svmgr.control, dynamod.ipc.server"
# What a fresh interpreter holds after each step (the svmgr's fixed cost).
STEPS = [
    ("interpreter (`python -c pass`)", "pass"),
    ("+ `import asyncio`", "import asyncio"),
    ("+ `import asyncio` without ssl", "import sys; sys.modules['ssl'] = None; import asyncio"),
    ("+ all of svmgr's modules", SVMGR_IMPORTS),
    (
        "+ plugins loaded",
        SVMGR_IMPORTS + "; from dynamod.plugins import make_plugin_host; make_plugin_host()",
    ),
]


def fixed_costs(ctx: Context, t: Table) -> None:
    """Resident memory and wall time of a fresh interpreter after each step."""
    env = ctx.scratch.env()
    for label, code in STEPS:
        rss, wall = Stat("MB"), Stat("ms")
        for _ in range(5):
            t0 = time.perf_counter()
            p = subprocess.run(
                [ctx.tools.python, "-c", f"{code}\n{RSS}"],
                capture_output=True,
                text=True,
                env=env,
                cwd=REPO,
                timeout=60,
            )
            dt = (time.perf_counter() - t0) * 1000
            if p.returncode != 0:
                rss.add(None, p.stderr.strip()[-200:])
                continue
            rss.add(int(p.stdout.split()[-1]) / 1024)
            wall.add(dt)
        t.row(f"RSS: {label}").cells["dynamod"] = rss
        t.row(f"wall time: {label}").cells["dynamod"] = wall


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
    fixed_costs(ctx, t)
    t.notes += [
        "cProfile measures wall time: `fork_exec` includes waiting, in vfork, until the child has "
        "exec'd (its own share of two busy cores); under the profiler Python code runs about 2x slower",
        "RSS / wall time rows: a fresh interpreter importing what svmgr imports, step by step "
        "(asyncio imports ssl, which maps and initialises OpenSSL)",
    ]
    if not out.exists():
        t.notes.append("no profile was written")
        return t
    for sort in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(str(out), stream=buf).sort_stats(sort).print_stats(TOP)
        text = buf.getvalue()
        body = text[text.find("   ncalls") :] if "   ncalls" in text else text
        body = body.replace(str(REPO) + "/", "").replace(
            sysconfig.get_paths()["stdlib"] + "/", "<stdlib>/"
        )
        t.appendix += (
            f"Top {TOP} by {sort} ({out.relative_to(REPO)}):\n\n```\n{body.rstrip()}\n```\n\n"
        )
    log(f"profile written to {out}")
    return t
