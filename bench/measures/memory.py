"""4. Footprint at idle with many services: resident memory, proportional
memory, processes and open descriptors of the manager; and dynamod-init as
PID 1 of a PID namespace."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from bench import procs
from bench.backends import Dynamod
from bench.common import log
from bench.measures.context import Context, finish, start
from bench.report import Row, Table
from bench.watch import ExecWatcher
from bench.workload import sleepers

KEY = "memory"
IDLE = 2.0


def footprint(pids: list[int]) -> tuple[float, float, int, int]:
    """(RSS MB, PSS MB, processes, open fds) summed over ``pids``."""
    rss = sum(procs.status_kb(p, "VmRSS") or 0 for p in pids) / 1024
    pss = sum(procs.pss_kb(p) or 0 for p in pids) / 1024
    fds = sum(procs.fd_count(p) or 0 for p in pids)
    return rss, pss, len(pids), fds


def add(
    rows: list[Row], name: str, values: tuple[float, float, int, int] | None, why: str = ""
) -> None:
    for row, unit, i in zip(rows, ("MB", "MB", "", ""), range(4), strict=True):
        row.stat(name, unit).add(None if values is None else float(values[i]), why)


def run(ctx: Context) -> Table:
    cols = ctx.columns()
    n = ctx.scale.loaded_n
    t = Table(KEY, f"4. Footprint at idle with {n} services", cols)
    rows = [
        t.row("resident memory (RSS)"),
        t.row("proportional memory (PSS)"),
        t.row("manager processes", ratio=False),
        t.row("open file descriptors"),
    ]
    for name in cols:
        if name not in ctx.available:
            for r in rows:
                r.cells[name] = "n/a"
            continue
        for i in range(ctx.scale.repeats):
            b = ctx.make(name)
            try:
                res = start(ctx, b, sleepers(ctx.scratch.svc_sleep, n), "memory")
                if not res.ok:
                    add(rows, name, None, res.why)
                    continue
                time.sleep(IDLE)
                values = footprint(b.manager_pids())
                log(f"memory {name} #{i}: {values}")
                add(rows, name, values)
            finally:
                finish(b)
    if "dynamod" in ctx.available:
        # Where svmgr's memory goes: the same manager with one service (the
        # fixed part), and with N services but no plugins.
        variants = [
            ("dynamod-svmgr with 1 service: RSS", 1, True),
            ("dynamod-svmgr `--no-plugins`: RSS", n, False),
        ]
        for label, count, plugins in variants:
            row = t.row(label)
            for name in cols:
                row.cells[name] = "—"
            for _ in range(ctx.scale.repeats):
                b = Dynamod(ctx.scratch, ctx.tools, plugins=plugins)
                try:
                    res = start(ctx, b, sleepers(ctx.scratch.svc_sleep, count), "memory-dynamod")
                    time.sleep(IDLE)
                    value = footprint(b.manager_pids())[0] if res.ok else None
                    row.stat("dynamod", "MB").add(value, res.why)
                finally:
                    finish(b)
    init_rows = [
        t.row("dynamod-init (PID 1): RSS"),
        t.row("dynamod-init (PID 1): open fds"),
        t.row("dynamod-svmgr under dynamod-init: RSS"),
    ]
    for row in init_rows:
        for name in cols:
            row.cells[name] = "—"
    if "dynamod" in ctx.available:
        if os.geteuid() != 0:
            init_rows[0].cells["dynamod"] = "n/a (needs root for a PID namespace)"
        else:
            for _ in range(ctx.scale.repeats):
                measure_init(ctx, n, init_rows)
    t.notes += [
        f"measured after {IDLE:g} s idle, once every service runs; s6 and runit: the scanner plus one "
        "s6-supervise / runsv per service (summed); RSS counts shared libraries once per process, "
        "PSS divides shared pages among their users",
        "dynamod-init: `unshare --pid --fork --mount --mount-proc` and `dynamod-init --container`, "
        "running the same services through its svmgr",
    ]
    return t


def measure_init(ctx: Context, n: int, rows: list[Row]) -> None:
    rss_row, fds_row, svmgr_row = rows
    b = Dynamod(ctx.scratch, ctx.tools)
    w = sleepers(ctx.scratch.svc_sleep, n)
    b.prepare(w, "init")
    script = (
        "mount -t tmpfs tmpfs /run && exec "
        f"{ctx.tools.dynamod_init} --container --config-dir {b.dir / 'etc'} --runtime-dir /run/dynamod"
    )
    argv = [
        "unshare",
        "--pid",
        "--fork",
        "--mount",
        "--mount-proc",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        script,
    ]
    try:
        with ExecWatcher(w.marker, force_scan=ctx.force_scan) as watcher:
            b.launch(argv)
            ts = watcher.wait(w.expect, 120)
        assert b.proc is not None
        kids = procs.children(b.proc.pid)
        if ts is None or not kids:
            rss_row.stat("dynamod", "MB").add(
                None, "dynamod-init did not start its services: " + b.log_tail(3)
            )
            return
        init = kids[0]
        svmgr = [c for c in procs.children(init) if any("svmgr" in a for a in procs.cmdline(c))]
        time.sleep(IDLE)
        rss, _pss, _n, fds = footprint([init])
        rss_row.stat("dynamod", "MB").add(rss)
        fds_row.stat("dynamod", "").add(float(fds))
        if svmgr:
            svmgr_row.stat("dynamod", "MB").add(footprint(svmgr)[0])
        log(f"dynamod-init: RSS {rss:.1f} MB, fds {fds}")
        # A clean poweroff: SIGTERM to PID 1.
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            b.proc.wait(60)
    finally:
        finish(b)
