"""Attacks on the control socket by an unprivileged user (issue 13), with the
figures a user feels: root's ``dynamodctl status`` wall time while the attack
runs, restarts of a crash-looping service, svmgr's log volume, RSS and fds.

    python -m bench.control_attacks [--nofile 1024] [--conns 1100]

svmgr runs with RLIMIT_NOFILE ``--nofile`` (soft and hard: what it can get)
and a service that exits every 0.2 s and is restarted at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dynamod.testing import Attacker, ConfigTree, Svmgr

CTL = str(Path(sys.executable).with_name("dynamodctl"))


def status_ms(sock: str) -> float | None:
    t0 = time.perf_counter()
    try:
        p = subprocess.run([CTL, "--socket", sock, "status", "steady"], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    return (time.perf_counter() - t0) * 1000 if p.returncode == 0 else None


def sample(sock: str, seconds: float) -> tuple[list[float], int]:
    times, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        dt = status_ms(sock)
        if dt is None:
            failed += 1
        else:
            times.append(dt)
    return times, failed


def proc_figures(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def restarts(mgr: Svmgr) -> int:
    return int(mgr.status("crasher")["restarts"])


def describe(label: str, times: list[float], failed: int) -> str:
    if not times:
        return f"{label}: no answer ({failed} failed)"
    return (f"{label}: status median {statistics.median(times):.0f} ms, max {max(times):.0f} ms, "
            f"{len(times)} answered, {failed} failed")


def flood(sock: str, seconds: float, uid: int) -> None:
    code = (
        "import socket, sys, time\n"
        "end = time.monotonic() + float(sys.argv[2])\n"
        "while time.monotonic() < end:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(sys.argv[1]); s.sendall(b'XX garbage'); s.recv(10)\n"
        "    except OSError: pass\n"
        "    s.close()\n"
    )
    subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable,
                    "-c", code, sock, str(seconds)], check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nofile", type=int, default=1024)
    ap.add_argument("--conns", type=int, default=1100)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--uid", type=int, default=65534)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dynamod-attack-", dir="/tmp"))
    os.chmod(work, 0o755)
    tree = ConfigTree(work / "etc")
    tree.supervisor("root", '[supervisor]\nname = "root"\nstrategy = "one-for-one"\n'
                    '[restart]\nmax-restarts = 10000\nmax-restart-window = "1s"\n')
    tree.simple("steady")
    tree.service("crasher", '[service]\nname = "crasher"\nexec = ["/bin/sh", "-c", "sleep 0.2; exit 1"]\n'
                 '[restart]\ndelay = "0ms"\nmax-restarts = 10000\nmax-restart-window = "1s"\n')
    wrapper = work / "python"
    wrapper.write_text(f"#!/bin/sh\nexec prlimit --nofile={args.nofile}:{args.nofile} {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    run = work / "run"
    run.mkdir(mode=0o755)
    try:
        with Svmgr(tree.root, run, python=wrapper) as mgr:
            mgr.wait_state("steady", "running")
            sock = mgr.socket
            print(describe("idle", *sample(sock, 2)))
            for mode in ("hold", "slow", "unread"):
                log0 = len(mgr.log())
                r0, t0 = restarts(mgr), time.monotonic()
                rss0, fds0 = proc_figures(mgr.pid)
                n = args.conns if mode != "unread" else min(args.conns, 300)
                with Attacker(sock, n, mode, uid=args.uid) as atk:
                    print(f"{mode}: attacker {atk.report}")
                    times, failed = sample(sock, args.seconds)
                    rss1, fds1 = proc_figures(mgr.pid)
                r1, t1 = restarts(mgr), time.monotonic()
                print(describe(f"{mode} x{n}", times, failed)
                      + f"; crasher restarts {r1 - r0} in {t1 - t0:.1f}s"
                      + f"; svmgr RSS {rss0 // 1024}->{rss1 // 1024} MiB, fds {fds0}->{fds1}"
                      + f"; log {len(mgr.log()) - log0} bytes")
                time.sleep(1)
            log0 = len(mgr.log())
            th = threading.Thread(target=flood, args=(sock, args.seconds, args.uid))
            th.start()
            times, failed = sample(sock, args.seconds)
            th.join()
            print(describe("bad-frame flood", times, failed)
                  + f"; log {len(mgr.log()) - log0} bytes in {args.seconds:g}s")
            print(describe("after", *sample(sock, 2)))
            errors = mgr.log().count("Too many open files")
            print(f"'Too many open files' in svmgr's log: {errors}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
