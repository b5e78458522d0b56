"""Reading processes from /proc, and making sure none of ours survive."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Stat:
    pid: int
    state: str
    ppid: int
    cpu: float  # utime + stime of the process itself, seconds


def stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return Stat(pid, rest[0].decode(), int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK)


def alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    s = stat(pid)
    return s is not None and s.state not in ("Z", "X")


def cpu_seconds(pids: Iterable[int]) -> float:
    return sum(s.cpu for p in pids if (s := stat(p)) is not None)


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def pss_kb(pid: int) -> int | None:
    """Proportional set size: shared pages divided among their users, so
    the sum over many processes is not inflated by shared libraries."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _belongs(pid: int, root: str, token: bytes) -> bool:
    """A process of this run: its command line names the scratch directory,
    its working directory is in it, or it carries the run token."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if root.encode() in f.read():
                return True
    except OSError:
        return False
    with contextlib.suppress(OSError):
        cwd = os.readlink(f"/proc/{pid}/cwd")
        if cwd == root or cwd.startswith(root + "/"):
            return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/environ", "rb") as f:
        return token in f.read()
    return False


def ours(root: str, token_var: str) -> list[int]:
    token = f"{token_var}={root}".encode() + b"\0"
    me = os.getpid()
    return [p for p in all_pids() if p != me and _belongs(p, root, token) and alive(p)]


def sweep(root: str, token_var: str, timeout: float = 10.0) -> int:
    """SIGKILL every process of this run until none is left; return how many
    there were. Raises RuntimeError if some survive (they would disturb the
    next measurement)."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        left = ours(root, token_var)
        if not left:
            return len(killed)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of the benchmark survive SIGKILL: {left[:10]}")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.02)


def cgroup2_mounts() -> list[str]:
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                out.append(parts[1])
    return out


def cgroups_of(pids: Iterable[int]) -> set[str]:
    """The cgroup2 directories (absolute paths) the processes are in, except
    the one this process is in."""
    mounts = cgroup2_mounts()
    if not mounts:
        return set()
    own = _cgroup("self")
    out = set()
    for pid in pids:
        rel = _cgroup(str(pid))
        if rel and rel != own and rel != "/":
            out.add(os.path.join(mounts[0], rel.lstrip("/")))
    return out


def _cgroup(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


def remove_cgroups(paths: Iterable[str]) -> None:
    """Remove the (now empty) cgroups the processes of a trial were in, and
    their ``dynamod-*`` parent (a per-manager tree the isolation plugin makes,
    left behind when the manager is killed). rmdir(2) refuses a cgroup that
    still has processes or children, so nothing in use is touched."""
    for path in sorted(set(paths), key=len, reverse=True):
        for p in (path, os.path.dirname(path)):
            if os.path.basename(p).startswith("dynamod-") or p == path:
                with contextlib.suppress(OSError):
                    os.rmdir(p)
