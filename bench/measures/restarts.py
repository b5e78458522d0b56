"""5. A service that exits at once, forever: how often each manager restarts
it, how it throttles, whether it gives up, and what that costs it."""

from __future__ import annotations

import itertools
import statistics
import time

from bench import procs
from bench.common import log
from bench.measures.context import Context, finish
from bench.report import Table
from bench.workload import crasher

KEY = "restarts"


def read_starts(path: str) -> list[float]:
    try:
        with open(path) as f:
            return [float(x) for x in f.read().split()]
    except OSError:
        return []


def run(ctx: Context) -> Table:
    cols = ctx.columns()
    window = ctx.scale.restart_window
    t = Table(
        KEY,
        f"5. A service that exits at once, forever ({window:g} s observed, default settings)",
        cols,
    )
    starts = t.row("starts in the window", ratio=False)
    rate = t.row("restarts per minute", ratio=False)
    gap = t.row("median pause between starts", ratio=False)
    last = t.row("last start (s after launch)", ratio=False)
    cpu = t.row("manager CPU over the window")
    final = t.row("manager's state at the end", ratio=False)
    for name in cols:
        if name not in ctx.available or name == "floor":
            for r in (starts, rate, gap, last, cpu, final):
                r.cells[name] = "n/a"
            continue
        b = ctx.make(name)
        try:
            marker = str(ctx.scratch.root / f"starts-{name}.txt")
            b.prepare(crasher(marker), "crasher")
            with open("/proc/uptime") as f:
                t0 = float(f.read().split()[0])
            b.launch()
            time.sleep(window)
            used = procs.cpu_seconds(b.manager_pids())
            state = b.state_of("crasher")
        finally:
            finish(b)
        times = read_starts(marker)
        log(f"restarts {name}: {len(times)} starts, state {state}, cpu {used}")
        starts.stat(name, "").add(float(len(times)))
        rate.stat(name, "/min").add(max(0, len(times) - 1) * 60 / window)
        gaps = [y - x for x, y in itertools.pairwise(times)]
        if gaps:
            gap.stat(name, "s").add(statistics.median(gaps))
        if times:
            last.stat(name, "s").add(times[-1] - t0)
        cpu.stat(name, "CPU s").add(used)
        final.cells[name] = state.replace("|", "/")
    t.notes += [
        "the service: `/bin/sh -c 'read up _ < /proc/uptime; echo $up >> FILE; exit 1'`, with each "
        "manager's default restart settings: dynamod `delay = 1s`, at most 5 restarts in 60 s, then "
        "failed; supervisord `startsecs = 1`, `startretries = 3` with a growing back-off, then FATAL; "
        "s6-supervise and runsv restart forever, at most once a second",
        "one trial per manager (the window is long); restarts per minute = (starts - 1) x 60 / window; "
        "manager CPU includes its start-up",
    ]
    return t
