"""Which cgroup tree belongs to this manager, and keeping it its own.

Every dynamod-svmgr puts its services in a tree no other manager uses, and
only ever signals processes in that tree. Two things make that so:

* **A name per instance.** The system instance (started by dynamod-init,
  runtime directory ``/run/dynamod``) uses ``MOUNT/dynamod``. Any other
  manager — a test, a demo, a per-user tree, a daemon started with
  ``setsid -f`` (whose parent is PID 1 too) — uses
  ``OWN/dynamod-HASH`` under its own cgroup, HASH being a digest of its PID
  namespace and runtime directory. No two running managers share a runtime
  directory (it holds the control socket), and a manager restarted by
  dynamod-init computes the same name again, so it finds the cgroups of the
  services it adopts.
* **An exclusive lock.** The manager holds ``flock(LOCK_EX)`` on the tree's
  directory for its whole life (a close-on-exec descriptor: no service
  inherits it). A second manager that would take a tree a live one holds
  gets :class:`TreeInUse` and moves on to the next name of its list (the
  per-instance name, then one that also has its PID in the digest); the
  kernel drops the lock when its holder dies, however it dies, so a tree
  whose lock can be taken has no live owner.

Stale trees: a tree of a manager that died without cleaning up (SIGKILL) is
taken over by the next manager of the same name (its successor; the
services' cgroups are reused, anything still in them is stopped with its
service), and :func:`sweep` removes empty, unlocked per-instance trees of
other managers under the same parent. A stale tree that still has
processes is left alone: they are not this manager's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time

from dynamod_isolation.cgroups import (
    PROC_CGROUP_INIT_INO,
    PROC_PID_INIT_INO,
    pid_cgroup,
    read_keyed,
)

SYSTEM_RUNTIME_DIR = "/run/dynamod"
SYSTEM_TREE = "dynamod"
INSTANCE_TREE = re.compile(r"dynamod-[0-9a-f]{12}")
# A sweeper holds a tree's lock for a few system calls: retry that long
# before taking a held lock for a live owner's.
LOCK_TRIES = 5
LOCK_RETRY = 0.002  # seconds


class TreeInUse(Exception):
    """Another running manager holds the tree."""

    def __init__(self, path: str, holder: int | None) -> None:
        self.path = path
        self.holder = holder
        who = f" (pid {holder})" if holder else ""
        super().__init__(f"cgroup tree {path} belongs to another running dynamod-svmgr{who}")


def is_system_instance(runtime_dir: str) -> bool:
    """The manager started by dynamod-init: the system runtime directory,
    and a child of PID 1 either on a real boot (the initial PID namespace)
    or in a container with a cgroup namespace of its own. A daemon started
    with ``setsid -f`` is a child of PID 1 too, which is why the runtime
    directory counts (and the lock settles what is left: two managers on
    /run/dynamod)."""
    if os.path.abspath(runtime_dir) != SYSTEM_RUNTIME_DIR or os.getppid() != 1:
        return False
    try:
        return (os.stat("/proc/self/ns/pid").st_ino == PROC_PID_INIT_INO
                or os.stat("/proc/self/ns/cgroup").st_ino != PROC_CGROUP_INIT_INO)
    except OSError:
        return False


def _digest(text: str) -> str:
    try:
        # The builtin module, not hashlib: that maps OpenSSL's libcrypto
        # into the manager, about 4 MB, for one digest.
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:  # renamed _sha2 in 3.12
        try:
            from _sha2 import sha256  # type: ignore[import-not-found,no-redef]
        except ImportError:
            from hashlib import sha256
    return str(sha256(text.encode()).hexdigest()[:12])


def candidates(mount: str, runtime_dir: str) -> list[str]:
    """The trees this manager may use, best first (see the module's
    docstring); the last one no other live process can hold."""
    out = []
    if is_system_instance(runtime_dir):
        out.append(os.path.join(mount, SYSTEM_TREE))
    parent = own_parent(mount)
    try:
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pidns = 0
    key = f"{pidns}:{os.path.abspath(runtime_dir)}"
    out.append(os.path.join(parent, f"dynamod-{_digest(key)}"))
    out.append(os.path.join(parent, f"dynamod-{_digest(f'{key}:{os.getpid()}')}"))
    return out


def own_parent(mount: str) -> str:
    """The manager's own cgroup directory: where per-instance trees go."""
    own = (pid_cgroup("self") or "/").strip("/")
    return os.path.join(mount, own) if own else mount


def claim(path: str) -> int:
    """Create the tree if needed and lock it for this manager's life;
    return the locked descriptor (close-on-exec). Raises :class:`TreeInUse`
    when a live manager holds it, OSError when it cannot be made."""
    busy = 0
    for _ in range(4 * LOCK_TRIES):  # bounded, whatever sweepers do meanwhile
        os.makedirs(path, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # a sweeper removed it between makedirs and open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            busy += 1
            if busy >= LOCK_TRIES:
                break
            time.sleep(LOCK_RETRY * busy)
            continue
        if _same(fd, path):
            return fd
        os.close(fd)  # a sweeper removed the one we locked: make it again
    raise TreeInUse(path, holder(path))


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _same(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def holder(path: str) -> int | None:
    """The PID holding the flock on ``path`` (from /proc/locks), if any."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 8980 00:26:291 0 EOF" (device in hex)
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        parts = line.split()
        if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == want:
            with contextlib.suppress(ValueError):
                return int(parts[4])
    return None


def sweep(parent: str, keep: str) -> list[str]:
    """Remove the per-instance trees under ``parent`` that no live manager
    holds and nothing runs in (empty service cgroups go with them); return
    their paths. ``keep`` (this manager's) is never touched; a tree with
    processes in it is left as it is."""
    removed = []
    try:
        entries = [e for e in os.scandir(parent)
                   if INSTANCE_TREE.fullmatch(e.name) and e.path != keep and e.is_dir(follow_symlinks=False)]
    except OSError:
        return removed
    for e in entries:
        try:
            fd = os.open(e.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live manager's
        try:
            if read_keyed(os.path.join(e.path, "cgroup.events")).get("populated", 1) != 0:
                continue
            with contextlib.suppress(OSError):
                for root, dirs, _files in os.walk(e.path, topdown=False):
                    for d in dirs:
                        os.rmdir(os.path.join(root, d))
                os.rmdir(e.path)
                removed.append(e.path)
        finally:
            os.close(fd)
    return removed
