"""9. Instructions: svmgr's own work counted by callgrind, not timed.

Wall and CPU seconds on a shared 2-core machine move by tens of percent with
whatever else runs; the number of instructions a process executes for the
same work does not (the same count to within 1% run after run, with the
other core busy). So a change to the engine or the spawn path is compared
across commits here: svmgr (``--no-plugins``, the host alone) runs under
``valgrind --tool=callgrind`` from launch until its status shows every
service up, then until it has stopped them all and exited. The services
themselves are not counted (``--trace-children=no``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from bench.backends import Backend
from bench.common import log
from bench.measures.context import Context, finish
from bench.report import Table
from bench.watch import ExecWatcher
from bench.workload import Workload, layered, sleepers

KEY = "instructions"
UNIT = "M instr"
TIMEOUT = 900.0  # callgrind runs Python about 50 times slower


def count(ctx: Context, w: Workload, label: str) -> tuple[float | None, str]:
    """Millions of instructions svmgr executes to start ``w``, report it up
    and stop it."""
    b: Backend = ctx.make("dynamod", plugins=False)
    try:
        b.prepare(w, label)
        out: Path = b.dir / "callgrind.out"
        argv = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            "--trace-children=no", ctx.tools.python, "-m", "dynamod.svmgr.main",
            *b.command()[1:],
        ]
        with ExecWatcher(w.marker, force_scan=ctx.force_scan) as watcher:
            ctx.watch_method = watcher.method
            b.launch(argv)
            if w.expect and watcher.wait(w.expect, TIMEOUT) is None:
                return None, f"only {watcher.count()}/{w.expect} running"
        deadline = time.monotonic() + TIMEOUT
        # Coarse polling: each status query is work svmgr counts.
        while not b.all_up():
            if time.monotonic() > deadline or b.stopped():
                return None, "status never said all up: " + b.log_tail(2)
            time.sleep(0.5)
        b.request_stop()
        assert b.proc is not None
        try:
            b.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            return None, "did not stop"
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]) / 1e6, ""
        return None, "callgrind wrote no totals"
    finally:
        finish(b)


def run(ctx: Context) -> Table:
    n = ctx.scale.dag_n
    marker = ctx.scratch.svc_sleep
    t = Table(KEY, f"9. Instructions svmgr executes (callgrind, millions; {n} services)",
              ["dynamod"])
    if "dynamod" not in ctx.available or shutil.which("valgrind") is None:
        t.row("start, status, stop").cells["dynamod"] = "n/a (needs valgrind)"
        return t
    empty = sleepers(marker, 0)
    shapes = [("empty", "no services: svmgr's start-up and exit", empty),
              ("flat", f"{n} services, no dependencies", sleepers(marker, n)),
              ("layered", f"{n} services, layered DAG (10 layers)", layered(marker, n))]
    figures: dict[str, float | None] = {}
    # Unrecorded: the first run compiles every module into the bytecode
    # cache (tens of millions of instructions the others do not pay).
    count(ctx, empty, "instr-warmup")
    for key, label, w in shapes:
        mi, why = count(ctx, w, f"instr-{key}")
        log(f"instructions {key}: {mi} {why}")
        t.row(f"{label}: start, status, stop", ratio=False).stat("dynamod", UNIT).add(mi, why)
        figures[key] = mi
    base = figures["empty"]
    for key in ("flat", "layered"):
        total = figures[key]
        row = t.row(f"per service beyond the empty run ({key})", ratio=False)
        if base is None or total is None:
            row.cells["dynamod"] = "n/a"
        else:
            row.stat("dynamod", "k instr").add((total - base) * 1e3 / n, "")
    t.notes += [
        "one run each: the count repeats to within about 1% (measured: 718.7 and 719.7 M for "
        "200 flat services), so no median is needed",
        "svmgr --no-plugins; polled for status every 0.5 s; the services (`sleep`) are not "
        "counted",
    ]
    return t
