"""cgroup v2: finding the hierarchy, dynamod's tree in it, one cgroup per
service, limits, statistics, whole-cgroup kill and removal.

Layout: ``TREE/NAME.service`` for every service, where TREE is
``/sys/fs/cgroup/dynamod`` for the system instance and a tree of its own for
any other manager (:mod:`dynamod_isolation.instance`). The ``.service`` suffix keeps a service called
``memory`` or ``cgroup.procs`` from colliding with an interface file.
Controllers are enabled in ``cgroup.subtree_control`` of TREE and of each of
its ancestors, never in a service's own cgroup: that is a leaf holding
processes, and the kernel's "no internal processes" rule would refuse
processes in a cgroup that distributes controllers to children.

Everything here is synchronous file I/O on cgroupfs (microseconds per
call), safe to do on the manager's loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field

from dynamod_isolation.options import CONTROLLERS, LIMITS

SUFFIX = ".service"
# Initial namespaces have fixed inode numbers (include/linux/proc_ns.h).
PROC_PID_INIT_INO = 0xEFFFFFFC
PROC_CGROUP_INIT_INO = 0xEFFFFFFB


def cgroup2_entries(mounts: str = "/proc/self/mounts") -> list[tuple[str, set[str]]]:
    """``(mount point, options)`` of every cgroup2 file system, in mount order."""
    out: list[tuple[str, set[str]]] = []
    try:
        with open(mounts, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 3 and parts[2] == "cgroup2":
                    out.append((unescape_mount_path(parts[1]), set(parts[3].split(","))))
    except OSError:
        pass
    return out


def cgroup2_mounts(mounts: str = "/proc/self/mounts") -> list[str]:
    """Mount points of cgroup2 file systems, in mount order."""
    return [path for path, _ in cgroup2_entries(mounts)]


def preferred_mount(mounts: list[str]) -> str | None:
    """The cgroup2 mount services go under: /sys/fs/cgroup on a pure v2
    system, .../unified on a hybrid one."""
    return next((m for m in mounts if m == "/sys/fs/cgroup"), mounts[0] if mounts else None)


def mount_options(mount: str, mounts: str = "/proc/self/mounts") -> set[str]:
    """The options of the cgroup2 file system mounted at ``mount`` (the
    last mount there wins, as it hides the others)."""
    found: set[str] = set()
    for path, options in cgroup2_entries(mounts):
        if path == mount:
            found = options
    return found


def unescape_mount_path(path: str) -> str:
    """/proc/*/mounts and mountinfo escape space, tab, newline and backslash
    as octal (``\\040``)."""
    if "\\" not in path:
        return path
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 4 <= len(path) and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def pid_cgroup(pid: int | str) -> str | None:
    """The cgroup2 path of a process (``/a/b``), relative to the hierarchy's
    root as this process sees it; None when it has exited."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n")
    except OSError:
        return None
    return None


def mount_of(path: str, mounts: list[str]) -> str | None:
    """The cgroup2 mount that contains ``path``."""
    best = None
    for m in mounts:
        if (path == m or path.startswith(m.rstrip("/") + "/")) and (best is None or len(m) > len(best)):
            best = m
    return best


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _write(path: str, value: str) -> None:
    # One write(2): cgroupfs parses each write as one command.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file (``cpu.stat``, ``memory.events``)."""
    out: dict[str, int] = {}
    text = _read(path)
    if text:
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    return out


@dataclass
class Tree:
    """dynamod's part of the cgroup2 hierarchy."""

    mount: str
    path: str
    # Controllers each service cgroup gets, and why the others are missing.
    controllers: set[str] = field(default_factory=set)
    missing: dict[str, str] = field(default_factory=dict)
    has_kill: bool = True

    @property
    def rel(self) -> str:
        """The tree as /proc/PID/cgroup spells it."""
        rel = os.path.relpath(self.path, self.mount)
        return "/" if rel == "." else "/" + rel

    def setup(self) -> None:
        """Create the tree and enable every controller we can along the way
        down from the hierarchy's root (raises OSError when the tree itself
        cannot be created)."""
        os.makedirs(self.path, exist_ok=True)
        wanted = set(CONTROLLERS)
        offered = set((_read(os.path.join(self.mount, "cgroup.controllers")) or "").split())
        for c in wanted - offered:
            self.missing[c] = f"cgroup2 at {self.mount} does not offer it"
        wanted &= offered
        chain = [self.mount]
        rel = os.path.relpath(self.path, self.mount)
        if rel != ".":
            for part in rel.split("/"):
                chain.append(os.path.join(chain[-1], part))
        for d in chain:
            if not wanted:
                break
            control = os.path.join(d, "cgroup.subtree_control")
            enabled = set((_read(control) or "").split())
            for c in sorted(wanted - enabled):
                try:
                    _write(control, f"+{c}")
                except OSError as exc:
                    why = os.strerror(exc.errno or 0)
                    if exc.errno == errno.EBUSY:
                        why = "it has processes of its own"
                    self.missing[c] = f"cannot enable it in {control}: {why}"
                    wanted.discard(c)
        self.controllers = wanted
        self.has_kill = os.path.exists(os.path.join(self.path, "cgroup.kill"))

    # ------------------------------------------------------------ services
    def service_path(self, name: str) -> str:
        return os.path.join(self.path, name + SUFFIX)

    def create(self, name: str) -> str:
        return self.make(name)[0]

    def make(self, name: str) -> tuple[str, bool]:
        """The service's cgroup, and whether it is new (holding the
        kernel's defaults, no process, no OOM kill counted yet)."""
        path = self.service_path(name)
        try:
            os.mkdir(path)
        except FileExistsError:
            return path, False
        return path, True

    def name_of(self, pid: int) -> str | None:
        """The service whose cgroup (or a cgroup below it) holds ``pid``."""
        cg = pid_cgroup(pid)
        prefix = self.rel.rstrip("/") + "/"
        if cg is None or not cg.startswith(prefix):
            return None
        leaf = cg[len(prefix) :].split("/", 1)[0]
        return leaf[: -len(SUFFIX)] if leaf.endswith(SUFFIX) and len(leaf) > len(SUFFIX) else None

    def apply(self, path: str, values: dict[str, str], keys: Iterable[str] = LIMITS,
              defaults: bool = True) -> dict[str, str]:
        """Write the limits ``keys``: the configured value, or with
        ``defaults`` the default, so a reused cgroup forgets an old one (a
        new one holds the defaults already). Return ``{key: why}`` for
        configured limits that could not be applied."""
        failed: dict[str, str] = {}
        for key in keys:
            lim = LIMITS[key]
            if lim.controller not in self.controllers:
                if key in values:
                    failed[key] = f"no {lim.controller} controller ({self.missing.get(lim.controller, 'not enabled')})"
                continue
            value = values.get(key, lim.default if defaults else None)
            if value is None:
                continue
            try:
                _write(os.path.join(path, lim.file), value)
            except OSError as exc:
                if key in values:
                    failed[key] = f"{lim.file}: {os.strerror(exc.errno or 0)}"
        return failed

    def procs(self, path: str) -> list[int]:
        text = _read(os.path.join(path, "cgroup.procs")) or ""
        return [int(p) for p in text.split()]

    def populated(self, path: str) -> bool:
        return read_keyed(os.path.join(path, "cgroup.events")).get("populated", 0) == 1

    def kill(self, path: str) -> bool:
        """SIGKILL every process in the cgroup and its descendants, including
        ones forking right now (cgroup.kill, Linux 5.14). Older kernels: freeze,
        kill what is listed, thaw."""
        if not os.path.isdir(path):
            return False
        if self.has_kill:
            try:
                _write(os.path.join(path, "cgroup.kill"), "1")
                return True
            except OSError:
                pass
        freeze = os.path.join(path, "cgroup.freeze")
        frozen = False
        with contextlib.suppress(OSError):
            _write(freeze, "1")
            frozen = True
        try:
            for pid in self.procs(path):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            if frozen:
                with contextlib.suppress(OSError):
                    _write(freeze, "0")
        return True

    def remove(self, path: str) -> bool:
        """rmdir the cgroup; False while processes are still dying in it.
        Sub-cgroups a service made itself go first (deepest first)."""
        try:
            for root, dirs, _files in os.walk(path, topdown=False):
                for d in dirs:
                    os.rmdir(os.path.join(root, d))
            os.rmdir(path)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True

    def remove_tree_if_empty(self) -> None:
        """A per-instance tree goes away with its last service."""
        with contextlib.suppress(OSError):
            os.rmdir(self.path)

    def stats(self, path: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, file in (("memory-current", "memory.current"), ("memory-peak", "memory.peak"),
                          ("pids-current", "pids.current")):
            text = _read(os.path.join(path, file))
            if text is not None:
                with contextlib.suppress(ValueError):
                    out[key] = int(text)
        cpu = read_keyed(os.path.join(path, "cpu.stat"))
        if "usage_usec" in cpu:
            out["cpu-usage-usec"] = cpu["usage_usec"]
        return out

    def oom_kills(self, path: str) -> int | None:
        """The cgroup's ``oom_kill`` count (None without the memory controller)."""
        events = os.path.join(path, "memory.events")
        if not os.path.exists(events):
            return None
        return read_keyed(events).get("oom_kill", 0)
