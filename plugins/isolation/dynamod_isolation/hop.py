"""Placing a service's process in its cgroup at fork time, without an exec.

The kernel puts a new process in its parent's cgroup. So for the moment of
the fork the manager moves itself into the service's cgroup, the host forks
(vfork: the parent resumes once the child has exec'd the service) and the
manager moves back to its own cgroup, its *home*. Against a shell step that
joins the cgroup and then execs the program, this saves one exec per service
(bench/spawn_cost.py: 0.7 ms against 1.3 ms until ``/bin/true`` has run).

While the manager is inside, the service's cgroup governs it too. So the
runtime hops only into a cgroup with no process in it, and applies the limits
that could hurt the manager (memory, cpu.max) only once it is back home
(:data:`dynamod_isolation.options.LIMITS`, ``during_fork``); ``pids.max`` is
in force from the start, and only counts the one process the fork makes.

Should the way back fail (home removed behind our back: it is empty while we
are away), the manager settles in the hierarchy's root, hopping is switched
off for the rest of its life (services then join through the shell step),
and :meth:`Home.leave` keeps a whole-cgroup kill from ever hitting the
manager itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType

from dynamod_isolation.cgroups import _write, pid_cgroup


class Home:
    """The manager's own cgroup and the way back to it."""

    def __init__(self, mount: str, log: Callable[[str], None]) -> None:
        self.mount = mount
        self.log = log
        self.pid = str(os.getpid())
        self.off = ""  # why hopping is off, once it is
        own = self.current()
        if own is None:
            self.off = "cannot read /proc/self/cgroup"
        self.path = own or mount

    def current(self) -> str | None:
        """The manager's cgroup directory now (None: /proc unreadable)."""
        rel = pid_cgroup("self")
        return None if rel is None else os.path.join(self.mount, rel.lstrip("/")).rstrip("/")

    def usable(self) -> bool:
        return not self.off

    def into(self, cgroup: str, after: Callable[[], None] | None = None) -> Hop:
        """A context manager for ``SpawnSpec.around_fork``: in ``cgroup``
        for the fork, home again after; then ``after()``."""
        return Hop(self, cgroup, after)

    def go_home(self) -> None:
        """Back to the home cgroup (never raises): recreated if it went
        away meanwhile, else the hierarchy's root, and hopping off."""
        try:
            _write(os.path.join(self.path, "cgroup.procs"), self.pid)
            return
        except OSError as exc:
            why = f"{self.path}: {os.strerror(exc.errno or 0)}"
        try:
            os.makedirs(self.path, exist_ok=True)
            _write(os.path.join(self.path, "cgroup.procs"), self.pid)
            self.log(f"recreated the manager's cgroup {self.path} (it was removed)")
            return
        except OSError:
            pass
        try:
            _write(os.path.join(self.mount, "cgroup.procs"), self.pid)
            where = self.mount
        except OSError as exc:
            where = f"the service's cgroup ({os.strerror(exc.errno or 0)} at the root too)"
        self.off = f"cannot move back to {why}"
        self.log(f"the manager could not return to its cgroup ({why}); it is now in {where}; "
                 "services join their cgroups through a shell step from now on")

    def leave(self, cgroup: str) -> None:
        """Make sure the manager is not in ``cgroup`` or below it, before
        that cgroup is killed or removed."""
        own = self.current()
        if own is None:
            return
        if own == cgroup or own.startswith(cgroup.rstrip("/") + "/"):
            self.go_home()


class Hop:
    """In the service's cgroup for the fork, home right after it."""

    def __init__(self, home: Home, cgroup: str, after: Callable[[], None] | None) -> None:
        self.home = home
        self.procs = os.path.join(cgroup, "cgroup.procs")
        self.after = after

    def __enter__(self) -> None:
        try:
            _write(self.procs, self.home.pid)
        except OSError as exc:
            raise RuntimeError(f"cannot join cgroup: {self.procs}: {os.strerror(exc.errno or 0)}") from None

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.home.go_home()
        if self.after is not None:
            self.after()
