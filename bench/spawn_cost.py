#!/usr/bin/env python3
"""What it costs dynamod-svmgr to spawn a service, per placement design.

Run as root (cgroup and namespace variants need it) with the project's
interpreter::

    sudo .venv/bin/python bench/spawn_cost.py [--rounds N] [--big-mib 2000]

Each variant spawns ``/bin/true`` with ``subprocess.Popen`` the way svmgr
does (close_fds, own session, a pipe for output) and is measured twice:

* **blocked**: how long ``Popen`` (plus any work the manager does itself
  around it) keeps the manager's event loop busy: this is what every other
  service waits for;
* **to exit**: from the start of the spawn until ``/bin/true`` has run and
  exited: the latency a service sees (wrapper execs included).

Both at a small manager (no ballast) and at a large one (``--big-mib`` of
touched memory), because a full ``fork()`` copies page tables and grows with
the parent's memory while ``vfork()`` does not. Medians in milliseconds.

Variants (the cgroup ones need a writable cgroup2 hierarchy: the first
cgroup2 mount in /proc/self/mounts, or ``DYNAMOD_CGROUP_ROOT``):

plain            Popen on the vfork path, no placement at all
preexec-join     preexec_fn writes the child's pid to cgroup.procs (fork path)
user=/group=     Popen(user=0, group=0): also forces fork (for reference)
python-shim      ``python3 -I -S -c`` joins the cgroup, then execs
sh-join          ``sh -c 'echo $$ > cgroup.procs && exec "$@"'`` (what
                 dynamod-isolation does)
manager-hop      the manager moves itself into the service's cgroup around
                 Popen and back (no extra exec, two migrations in the manager)
sh-join+pid      sh-join, then ``unshare --pid --fork --mount-proc --kill-child``
sh-join+mnt      sh-join, ``unshare --mount``, a setup shell that makes a
                 private /tmp and remounts /usr and /etc read-only
netns-prepare    only the manager-side part of a net namespace: a thread
                 unshares a netns and sets its loopback up over netlink
                 (pyroute2, imported beforehand)
sh-join+net      netns-prepare, then ``nsenter --net=/proc/self/fd/N`` + sh-join

Standalone on purpose: no dynamod import, so it measures the mechanisms and
not whatever else the manager does. The commands mirror the ones the plugin
builds (dynamod_isolation.wrappers).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

TRUE = shutil.which("true") or "/bin/true"
SH = "/bin/sh"
JOIN = 'echo $$ > "$1" && shift && exec "$@"'
PY_SHIM = (
    "import os,sys\n"
    "with open(sys.argv[1],'w') as f: f.write(str(os.getpid()))\n"
    "os.execv(sys.argv[2], sys.argv[2:])"
)
MNT_SETUP = (
    "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp && "
    "mount --bind -o ro /usr /usr && mount --bind -o ro /etc /etc && exec \"$@\""
)
CLONE_NEWNET = 0x40000000

Spawner = Callable[[], tuple[float, float]]


def cgroup2_mount() -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return None


def own_cgroup_procs(mount: str) -> str:
    """The cgroup.procs of the cgroup this process is in (to hop back)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return os.path.join(mount, line[3:].strip().lstrip("/"), "cgroup.procs")
    raise RuntimeError("not in a cgroup2 hierarchy")


def run(argv: list[str], **kw: object) -> tuple[float, float]:
    """Spawn like svmgr; return (ms until Popen returned, ms until exit)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    t0 = time.perf_counter()
    p = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=w, stderr=w,
        close_fds=True, start_new_session=True, **kw,  # type: ignore[call-overload]
    )
    t1 = time.perf_counter()
    os.close(w)
    p.wait()
    t2 = time.perf_counter()
    os.close(r)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[:6]}... exited {p.returncode}")
    return (t1 - t0) * 1000, (t2 - t0) * 1000


def make_netns(ready: bool = True) -> int:
    """A new network namespace with lo up, made in a throw-away thread (a
    netns belongs to a thread; the manager's own thread never changes)."""
    from pyroute2 import IPRoute

    libc = ctypes.CDLL(None, use_errno=True)
    out: dict[str, object] = {}

    def work() -> None:
        try:
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            out["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            if ready:
                with IPRoute() as ipr:
                    ipr.link("set", index=1, state="up")
        except Exception as exc:  # reported below
            out["err"] = exc

    t = threading.Thread(target=work)
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]  # type: ignore[misc]
    return out["fd"]  # type: ignore[return-value]


def variants(cg: str | None) -> Iterator[tuple[str, Spawner | None, str]]:
    procs = os.path.join(cg, "cgroup.procs") if cg else None

    yield "plain", lambda: run([TRUE]), "vfork"
    if procs is None:
        yield "preexec-join", None, "no writable cgroup2"
    else:

        def join() -> None:
            with open(procs, "w") as f:  # type: ignore[arg-type]
                f.write(str(os.getpid()))

        yield "preexec-join", lambda: run([TRUE], preexec_fn=join), "fork"
    yield "user=/group=", lambda: run([TRUE], user=0, group=0), "fork"
    if procs is None:
        for name in ("python-shim", "sh-join", "manager-hop", "sh-join+pid", "sh-join+mnt", "sh-join+net"):
            yield name, None, "no writable cgroup2"
    else:
        yield "python-shim", lambda: run([sys.executable, "-I", "-S", "-c", PY_SHIM, procs, TRUE]), "vfork + python"
        yield "sh-join", lambda: run([SH, "-c", JOIN, "sh", procs, TRUE]), "vfork + sh"
        home = own_cgroup_procs(cgroup2_mount() or "/sys/fs/cgroup")

        def hop() -> tuple[float, float]:
            t0 = time.perf_counter()
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
            try:
                r, w = os.pipe2(os.O_CLOEXEC)
                p = subprocess.Popen([TRUE], stdin=subprocess.DEVNULL, stdout=w, stderr=w,
                                     close_fds=True, start_new_session=True)
            finally:
                with open(home, "w") as f:
                    f.write(str(os.getpid()))
            t1 = time.perf_counter()
            os.close(w)
            p.wait()
            t2 = time.perf_counter()
            os.close(r)
            return (t1 - t0) * 1000, (t2 - t0) * 1000

        yield "manager-hop", hop, "vfork + 2 migrations"
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        yield "sh-join+pid", lambda: run(
            [SH, "-c", JOIN, "sh", procs, unshare, "--pid", "--fork", "--mount-proc", "--kill-child", TRUE]
        ), "vfork + sh + unshare"
        yield "sh-join+mnt", lambda: run(
            [SH, "-c", JOIN, "sh", procs, unshare, "--mount", "--propagation", "private",
             SH, "-c", MNT_SETUP, "sh", TRUE]
        ), "vfork + sh + unshare + sh + 3 mount"
        try:
            os.close(make_netns())  # import pyroute2 and warm up outside the timing
            nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"

            def net() -> tuple[float, float]:
                t0 = time.perf_counter()
                fd = make_netns()
                try:
                    a, b = run([nsenter, f"--net=/proc/self/fd/{fd}", SH, "-c", JOIN, "sh", procs, TRUE],
                               pass_fds=(fd,))
                finally:
                    os.close(fd)
                t = (time.perf_counter() - t0) * 1000
                return t - b + a, t

            def prepare_only() -> tuple[float, float]:
                t0 = time.perf_counter()
                os.close(make_netns())
                t = (time.perf_counter() - t0) * 1000
                return t, t

            yield "netns-prepare", prepare_only, "thread + unshare + netlink"
            yield "sh-join+net", net, "netns-prepare + nsenter + sh"
        except Exception as exc:
            yield "netns-prepare", None, f"unavailable: {exc}"
            yield "sh-join+net", None, f"unavailable: {exc}"


def measure(fn: Spawner, rounds: int) -> tuple[float, float]:
    for _ in range(3):  # warm caches
        fn()
    blocked, total = [], []
    for _ in range(rounds):
        a, b = fn()
        blocked.append(a)
        total.append(b)
    return statistics.median(blocked), statistics.median(total)


@contextlib.contextmanager
def bench_cgroup() -> Iterator[str | None]:
    mount = os.environ.get("DYNAMOD_CGROUP_ROOT") or cgroup2_mount()
    if mount is None or os.geteuid() != 0:
        yield None
        return
    path = os.path.join(mount, f"dynamod-bench-{os.getpid()}")
    try:
        os.mkdir(path)
    except OSError as exc:
        print(f"(no cgroup variants: cannot create {path}: {exc.strerror})", file=sys.stderr)
        yield None
        return
    try:
        yield path
    finally:
        for _ in range(100):
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=100, help="spawns per variant and size (default 100)")
    ap.add_argument("--big-mib", type=int, default=2000, help="ballast of the large manager (MiB)")
    args = ap.parse_args()
    rows: dict[str, dict[str, tuple[float, float] | str]] = {}
    notes: dict[str, str] = {}
    sizes = [("small", 0), ("large", args.big_mib)]
    with bench_cgroup() as cg:
        for label, mib in sizes:
            ballast = bytearray(mib * 1024 * 1024)
            for i in range(0, len(ballast), 4096):  # touch every page: real RSS
                ballast[i] = 1
            with open("/proc/self/status") as f:
                rss = next(line.split()[1] for line in f if line.startswith("VmRSS"))
            label = f"{label} ({int(rss) // 1024} MiB RSS)"
            for name, fn, how in variants(cg):
                notes[name] = how
                if fn is None:
                    rows.setdefault(name, {})[label] = how
                    continue
                rows.setdefault(name, {})[label] = measure(fn, args.rounds)
            del ballast
    cols = list(next(iter(rows.values())))
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs, {args.rounds} rounds, medians in ms "
          "(blocked = the manager's loop is busy; to exit = until /bin/true has exited)\n")
    head = "| variant | how | " + " | ".join(f"{c} blocked | {c} to exit" for c in cols) + " |"
    print(head)
    print("|" + "---|" * (2 + 2 * len(cols)))
    for name, by in rows.items():
        cells = []
        for c in cols:
            v = by[c]
            cells += [f"{v[0]:.2f}", f"{v[1]:.2f}"] if isinstance(v, tuple) else ["n/a", "n/a"]
        print(f"| {name} | {notes[name]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
