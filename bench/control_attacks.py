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


def flood(sock: str, seconds: float, uid: int, payload: bytes = b"XX garbage", procs: int = 1) -> None:
    """``procs`` processes of ``uid`` connecting as fast as they can, each
    connection sending ``payload`` (nothing if empty) and closing."""
    code = (
        "import socket, sys, time\n"
        "end = time.monotonic() + float(sys.argv[2])\n"
        "data = bytes.fromhex(sys.argv[3])\n"
        "while time.monotonic() < end:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(sys.argv[1])\n"
        "        if data: s.sendall(data); s.recv(10)\n"
        "    except OSError: pass\n"
        "    s.close()\n"
    )
    ps = [subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable,
                            "-c", code, sock, str(seconds), payload.hex()]) for _ in range(procs)]
    for p in ps:
        p.wait()


def root_split(sock: str, seconds: float, *, public: bool = False) -> str:
    """Root's connect() wait and its request round trip, apart, through the
    trusted twin (what dynamodctl uses) or the public socket: what the
    separate root-only socket saves is in the connect."""
    from dynamod.ipc import client as ipc

    connects, trips, failed = [], [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            if public:
                c = ipc.Client.__new__(ipc.Client)
                c.__dict__.update(path=sock, timeout=10, _ids=iter(range(1, 99)),
                                  _decoder=ipc.FrameDecoder(), _events=ipc.deque(), _pending=ipc.deque())
                c._sock = ipc.connect_unix(sock, 10)
            else:
                c = ipc.Client(sock, timeout=10)
        except OSError:
            failed += 1
            continue
        t1 = time.perf_counter()
        c.request("ServiceStatus", {"name": "steady"})
        t2 = time.perf_counter()
        c.close()
        connects.append((t1 - t0) * 1000)
        trips.append((t2 - t1) * 1000)
    return (f"{'public' if public else 'trusted'} socket: connect median {statistics.median(connects):.2f} ms "
            f"max {max(connects):.1f} ms; request median {statistics.median(trips):.2f} ms "
            f"max {max(trips):.1f} ms ({len(trips)} calls, {failed} failed)")


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
            print("idle, " + root_split(sock, 2))
            print("idle, " + root_split(sock, 2, public=True))
            for public in (False, True):
                th = threading.Thread(target=flood, args=(sock, args.seconds, args.uid, b"", 4))
                th.start()
                time.sleep(0.5)
                print("connect flood (4 procs), " + root_split(sock, args.seconds - 1, public=public))
                th.join()
            print(describe("after", *sample(sock, 2)))
            errors = mgr.log().count("Too many open files")
            print(f"'Too many open files' in svmgr's log: {errors}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
