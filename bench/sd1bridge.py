#!/usr/bin/env python3
"""Whole-process times of the real systemctl against dynamod through
dynamod-sd1bridge (issue 16: goal <= 50 ms for status and list-units with
200 services, <= 60 ms for starting a ready-at-once service).

    .venv/bin/python bench/sd1bridge.py [--services 200] [--runs 30]

Needs root (a private mount namespace for /run/systemd). For each path (the
system bus through a private dbus-daemon, and /run/systemd/private with no
dbus-daemon) it prints the median and the 90th percentile of: ``systemctl
status s17``, ``systemctl list-units``, ``systemctl start`` of a oneshot
``/bin/true`` (ready when it exits) and of a simple service (readiness
``none``: svmgr holds its start job 50 ms to see it stay up), each a fresh
systemctl process, timed from spawn to exit; and, as the floor, the same
process doing nothing over D-Bus (``systemctl --version``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from dynamod_mimic_common.testing import Namespace
from dynamod_sd1bridge.testing import Stack

from dynamod.testing import ConfigTree


def timed(stack: Stack, *args: str) -> float:
    argv = stack.ns.argv(["systemctl", *args])
    env = stack.env()
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 3):
        raise RuntimeError(f"systemctl {' '.join(args)}: rc={r.returncode} {r.stderr}")
    return dt * 1000


def nsenter_floor(stack: Stack, runs: int) -> float:
    # nsenter itself costs a little: measured and reported, not subtracted.
    vals = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(stack.ns.argv(["true"]), check=True)
        vals.append((time.perf_counter() - t0) * 1000)
    return statistics.median(vals)


def stats(vals: list[float]) -> str:
    vals = sorted(vals)
    p90 = vals[min(len(vals) - 1, int(len(vals) * 0.9))]
    return f"median {statistics.median(vals):6.1f} ms   p90 {p90:6.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--via", default="bus,private", help="bus, private or both (default)")
    args = ap.parse_args()
    for via in args.via.split(","):
        work = Path(tempfile.mkdtemp(prefix="sd1bench-", dir="/tmp"))
        work.chmod(0o755)
        ns = Namespace()
        tree = ConfigTree(work / "etc")
        for i in range(args.services):
            tree.service(f"s{i}", f'[service]\nname = "s{i}"\ndescription = "service {i}"\n'
                         'exec = ["/bin/sleep", "1000000"]\n')
        tree.service("quick", '[service]\nname = "quick"\ntype = "oneshot"\nenabled = false\n'
                     'exec = ["/bin/true"]\n[restart]\npolicy = "temporary"\n')
        tree.service("plain", '[service]\nname = "plain"\nenabled = false\n'
                     'exec = ["/bin/sleep", "1000000"]\n')
        stack = Stack(work, ns, tree, via)
        try:
            stack.start(tuple(f"s{i}" for i in range(args.services)))
            print(f"{args.services} services, via {via}"
                  f" (nsenter alone: {nsenter_floor(stack, 10):.1f} ms)")
            for label, cmd in [("systemctl --version", ("--version",)),
                               ("systemctl status s17", ("status", "s17")),
                               ("systemctl list-units", ("list-units",))]:
                for _ in range(3):
                    timed(stack, *cmd)  # warm caches
                print(f"  {label:28} {stats([timed(stack, *cmd) for _ in range(args.runs)])}")
            starts = []
            for _ in range(args.runs):
                starts.append(timed(stack, "start", "quick"))
            print(f"  {'systemctl start (oneshot)':28} {stats(starts)}")
            starts = []
            for _ in range(args.runs):
                timed(stack, "stop", "plain")
                starts.append(timed(stack, "start", "plain"))
            print(f"  {'systemctl start (simple)':28} {stats(starts)}")
        finally:
            stack.stop()
            ns.close()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
