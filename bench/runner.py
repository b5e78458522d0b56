"""The suite's command line: ``bench/run [--quick] [--only NAME]...``."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench import peers
from bench.common import REPO, RESULTS_DIR, TOKEN_VAR, Scratch, Tools, log
from bench.measures import (
    control,
    ctl,
    deps,
    instructions,
    memory,
    profile,
    restarts,
    shutdown,
    spawn,
    startup,
)
from bench.measures.context import FULL, QUICK, Context, Scale
from bench.procs import sweep
from bench.report import DASH, DIVIDE, TIMES, Table, render_all, write_json

MEASURES: dict[str, Callable[[Context], Table]] = {
    startup.KEY: startup.run,
    deps.KEY: deps.run,
    control.KEY: control.run,
    memory.KEY: memory.run,
    restarts.KEY: restarts.run,
    shutdown.KEY: shutdown.run,
    spawn.KEY: spawn.run,
    ctl.KEY: ctl.run,
    instructions.KEY: instructions.run,
    profile.KEY: profile.run,
}
DOC = REPO / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description="dynamod side by side with its peers")
    p.add_argument(
        "--quick", action="store_true", help="small N and few repeats: validates in minutes"
    )
    p.add_argument(
        "--only",
        action="append",
        choices=list(MEASURES),
        metavar="NAME",
        help=f"run only this measurement (repeatable): {', '.join(MEASURES)}",
    )
    p.add_argument(
        "--backends", help="comma-separated subset of dynamod,floor,supervisord,s6,runit"
    )
    p.add_argument("--repeats", type=int, help="trials per figure (default: 3, --quick: 2)")
    p.add_argument("--no-install", action="store_true", help="do not install missing peers")
    p.add_argument(
        "--scan", action="store_true", help="watch processes by scanning /proc even as root"
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (for debugging)")
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="replace the results section of docs/performance.md with this run's tables",
    )
    return p.parse_args(argv)


def header(ctx: Context, mode: str, versions: dict[str, str], started: datetime.datetime) -> str:
    v = ", ".join(f"{k} {val}" for k, val in sorted(versions.items()))
    load = os.getloadavg()
    return (
        f"## Results: {started:%Y-%m-%d %H:%M} ({mode})\n\n"
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average at the start "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.  \n"
        f"Versions: {v}.  \n"
        f"Figures are medians of {ctx.scale.repeats} runs with [min{DASH}max]; a peer's `(N{TIMES})` "
        f"is its figure divided by dynamod's; `dynamod {DIVIDE} floor` is dynamod's figure divided by the "
        f"floor's. Processes watched by: {ctx.watch_method}."
    )


def update_docs(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc:
        doc += f"\n{BEGIN}\n{END}\n"
    new = re.sub(
        re.escape(BEGIN) + ".*?" + re.escape(END),
        lambda _m: f"{BEGIN}\n{text}\n{END}",
        doc,
        flags=re.S,
    )
    DOC.write_text(new)
    log(f"updated {DOC.relative_to(REPO)}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    scale: Scale = QUICK if args.quick else FULL
    if args.repeats:
        scale = Scale(**{**scale.__dict__, "repeats": args.repeats})
    if not args.no_install:
        for problem in peers.ensure():
            log(f"warning: {problem}")
    scratch = Scratch(keep=args.keep)

    def interrupted(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    ctx = Context(scale, scratch, Tools(), force_scan=args.scan)
    only = args.backends.split(",") if args.backends else None
    ctx.find_backends(only)
    started = datetime.datetime.now()
    mode = ("quick" if args.quick else "full") + (
        f", only {', '.join(args.only)}" if args.only else ""
    )
    tables: list[Table] = []
    interrupted = False
    t0 = time.monotonic()
    try:
        for key, fn in MEASURES.items():
            if args.only and key not in args.only:
                continue
            log(f"== {key}")
            tables.append(fn(ctx))
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured (docs/performance.md is left alone)")
        interrupted = True
    finally:
        killed = sweep(str(scratch.root), TOKEN_VAR)
        if killed:
            log(f"clean-up: killed {killed} leftover processes")
        scratch.remove()
    if interrupted:
        mode += ", interrupted"
    text = render_all(header(ctx, mode, peers.versions(), started), tables)
    text += f"\nWall time of this run: {time.monotonic() - t0:.0f} s.\n"
    print(text)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "mode": mode,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": peers.versions(),
        "watch": ctx.watch_method,
        "unavailable": ctx.unavailable,
        "scale": scale.__dict__,
    }
    for path in (RESULTS_DIR / f"{stamp}.json", RESULTS_DIR / "latest.json"):
        write_json(path, meta, tables)
    (RESULTS_DIR / "latest.md").write_text(text)
    log(
        f"results: {Path(RESULTS_DIR / f'{stamp}.json').relative_to(REPO)} and bench/results/latest.md"
    )
    if args.write_docs and not interrupted:
        update_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
