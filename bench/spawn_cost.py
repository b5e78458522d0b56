#!/usr/bin/env python3
"""What it costs dynamod-svmgr to spawn a service, per placement design.

Run as root (cgroup and namespace variants need it) with the project's
interpreter::

    sudo .venv/bin/python bench/spawn_cost.py [--rounds N] [--small-mib 40] [--big-mib 2000]

Each variant spawns ``/bin/true`` with ``subprocess.Popen`` the way svmgr
does (close_fds, own session, a pipe for output) and is measured twice:

* **blocked**: how long ``Popen`` (plus any work the manager does itself
  around it) keeps the manager's event loop busy: this is what every other
  service waits for;
* **to exit**: from the start of the spawn until ``/bin/true`` has run and
  exited: the latency a service sees (wrapper execs included).

Both at a small manager (``--small-mib`` of touched ballast: about svmgr's
size) and at a large one (``--big-mib``), because a full ``fork()`` copies page tables and grows with
the parent's memory while ``vfork()`` does not. Medians in milliseconds.

Variants (the cgroup ones need a writable cgroup2 hierarchy: the first
cgroup2 mount in /proc/self/mounts, or ``DYNAMOD_CGROUP_ROOT``):

plain            Popen on the vfork path, no placement at all
preexec-join     preexec_fn writes the child's pid to cgroup.procs (fork path)
user=/group=     Popen(user=0, group=0): also forces fork (for reference)
python-shim      ``python3 -I -S -c`` joins the cgroup, then execs
sh-join          ``sh -c 'echo $$ > cgroup.procs && exec "$@"'`` (what
                 dynamod-isolation does with DYNAMOD_CGROUP_JOIN=shell)
manager-hop      the manager moves itself into the service's cgroup around
                 Popen and back (no extra exec, two migrations in the manager;
                 what dynamod-isolation does)
sh-join+pid      sh-join, then ``unshare --pid --fork --mount-proc --kill-child``
sh-join+mnt      sh-join, ``unshare --mount``, a setup shell that makes a
                 private /tmp and remounts /usr and /etc read-only
netns-prepare    only the manager-side part of a net namespace: a thread
                 unshares a netns and sets its loopback up over netlink
                 (pyroute2, imported beforehand)
sh-join+net      netns-prepare, then ``nsenter --net=/proc/self/fd/N`` + sh-join
plugin: ...      the chains dynamod-isolation itself builds (its spawn hook,
                 Popen, and for a user namespace the manager's answer to the
                 map handshake), one row per kind of [namespace] table

Measured here (kernel 6.18, 2 CPUs, a loaded VM; 100 rounds; three runs
agreed within about +-30 %, the fork rows varied most), milliseconds:

| variant | 54 MiB blocked | to exit | 2 GiB blocked | to exit |
|---|---|---|---|---|
| plain | 0.19 | 0.82 | 0.24 | 0.91 |
| preexec-join | 9.62 | 10.59 | 122.30 | 122.98 |
| user=/group= | 8.78 | 9.44 | 106.19 | 106.89 |
| python-shim | 0.34 | 12.56 | 0.37 | 13.54 |
| sh-join (chosen) | 0.25 | 1.93 | 0.30 | 2.08 |
| manager-hop | 0.28 | 0.99 | 0.32 | 1.11 |
| sh-join+pid | 0.33 | 3.91 | 0.34 | 4.19 |
| sh-join+mnt | 0.30 | 9.06 | 0.31 | 9.54 |
| netns-prepare | 1.38 | 1.38 | 1.71 | 1.71 |
| sh-join+net | 3.00 | 5.76 | 2.89 | 5.84 |
| plugin: cgroup only (every service) | 0.30 | 1.74 | 0.26 | 1.62 |
| plugin: + pid | 0.42 | 3.36 | 0.40 | 3.41 |
| plugin: + private-tmp, protect-system=full | 0.91 | 15.70 | 0.88 | 13.68 |
| plugin: + user | 0.99 | 6.33 | 0.99 | 6.90 |
| plugin: + net | 3.36 | 6.72 | 3.46 | 6.60 |
| plugin: + pid, user, uts, ipc, cgroup, net, private-tmp, strict | 5.93 | 32.22 | 5.38 | 30.94 |

Discussion and the choice: docs/isolation.md.

The mechanism rows need nothing but the standard library (and pyroute2 for
the net rows); the ``plugin:`` rows import dynamod_isolation (run with the
project's .venv) and are left out without it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
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


class _Config:
    def __init__(self, sections: dict) -> None:
        self.sections = sections
        self.type = "simple"


class _Service:
    """What dynamod-isolation uses of a service (a ServiceContext)."""

    def __init__(self, name: str, runtime_dir: str, sections: dict) -> None:
        self.name = name
        self.config = _Config(sections)
        self.runtime_dir = runtime_dir

    def log(self, message: str) -> None:
        pass

    def fail(self, reason: str) -> None:
        pass


PLUGIN_CONFIGS: list[tuple[str, dict]] = [
    ("cgroup only (every service)", {}),
    ("+ pid", {"namespace": {"enable": ["pid"]}}),
    ("+ private-tmp, protect-system=full", {"namespace": {"private-tmp": True, "protect-system": "full"}}),
    ("+ user", {"namespace": {"enable": ["user"]}}),
    ("+ net", {"namespace": {"enable": ["net"]}}),
    ("+ pid, user, uts, ipc, cgroup, net, private-tmp, strict",
     {"namespace": {"enable": ["pid", "user", "ipc", "cgroup", "net"], "hostname": "box",
                    "private-tmp": True, "protect-system": "strict"}}),
]


_PLUGIN_TREES = itertools.count()


def plugin_variants(cg: str | None, runtime_dir: str) -> Iterator[tuple[str, Spawner | None, str]]:
    """The wrapper chains dynamod-isolation really builds (its prepare hook,
    then Popen inside the contexts it asked for, ``around_fork``; for a user namespace also the manager's answer to the
    handshake, which it gives from its loop)."""
    try:
        from dynamod_isolation.runtime import Isolation

        from dynamod.api import SpawnSpec
    except ImportError as exc:
        for name, _ in PLUGIN_CONFIGS:
            yield f"plugin: {name}", None, f"not installed ({exc})"
        return
    if cg is None:
        for name, _ in PLUGIN_CONFIGS:
            yield f"plugin: {name}", None, "no writable cgroup2"
        return
    # A tree per call (per manager size): the plugin holds its tree's lock
    # for the life of the process, and a second one would be refused it.
    iso = Isolation(root=os.path.join(cg, f"plugin-{next(_PLUGIN_TREES)}"), log=lambda m: None)

    def spawner(sections: dict) -> Spawner:
        def once() -> tuple[float, float]:
            svc = _Service("bench", runtime_dir, sections)
            spec = SpawnSpec(argv=[TRUE], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            r, w = os.pipe2(os.O_CLOEXEC)
            t0 = time.perf_counter()
            iso.prepare(svc, spec)
            with contextlib.ExitStack() as around:  # as the host does (svmgr/spawn.py)
                for ctx in spec.around_fork:
                    around.enter_context(ctx)
                p = subprocess.Popen([*spec.wrapper, *spec.argv], stdin=subprocess.DEVNULL,
                                     stdout=w, stderr=w, close_fds=True, start_new_session=True)
            iso.started(svc, p.pid)
            blocked = time.perf_counter() - t0
            os.close(w)
            hs = iso.running["bench"].handshake
            if hs is not None:  # what the manager's loop does when "up" arrives
                select.select([hs.up_fd], [], [], 10)
                t = time.perf_counter()
                os.read(hs.up_fd, 64)
                hs.answer(p.pid, print)
                blocked += time.perf_counter() - t
            p.wait()
            t2 = time.perf_counter()
            out = os.read(r, 4096)
            os.close(r)
            iso.stopped(svc)
            if p.returncode != 0:
                raise RuntimeError(f"plugin chain exited {p.returncode}: {out.decode(errors='replace')}")
            return blocked * 1000, (t2 - t0) * 1000

        return once

    for name, sections in PLUGIN_CONFIGS:
        yield f"plugin: {name}", spawner(sections), "dynamod-isolation's chain"


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
                for root, dirs, _files in os.walk(path, topdown=False):
                    for d in dirs:
                        os.rmdir(os.path.join(root, d))
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=100, help="spawns per variant and size (default 100)")
    ap.add_argument("--small-mib", type=int, default=40, help="ballast of the small manager (MiB)")
    ap.add_argument("--big-mib", type=int, default=2000, help="ballast of the large manager (MiB)")
    args = ap.parse_args()
    rows: dict[str, dict[str, tuple[float, float] | str]] = {}
    notes: dict[str, str] = {}
    sizes = [("small", args.small_mib), ("large", args.big_mib)]
    runtime_dir = tempfile.mkdtemp(prefix="dynamod-bench-")
    with bench_cgroup() as cg:
        for label, mib in sizes:
            ballast = bytearray(mib * 1024 * 1024)
            for i in range(0, len(ballast), 4096):  # touch every page: real RSS
                ballast[i] = 1
            with open("/proc/self/status") as f:
                rss = next(line.split()[1] for line in f if line.startswith("VmRSS"))
            label = f"{label} ({int(rss) // 1024} MiB RSS)"
            for name, fn, how in [*variants(cg), *plugin_variants(cg, runtime_dir)]:
                notes[name] = how
                if fn is None:
                    rows.setdefault(name, {})[label] = how
                    continue
                rows.setdefault(name, {})[label] = measure(fn, args.rounds)
            del ballast
    shutil.rmtree(runtime_dir, ignore_errors=True)
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
