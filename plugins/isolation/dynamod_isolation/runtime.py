"""The plugin's state inside one dynamod-svmgr: the cgroup tree, what each
running service was given (cgroup, network namespace, user namespace
handshake, OOM watch), and the clean-up after it stopped.

:mod:`dynamod_isolation.plugin` only forwards hooks to the one
:class:`Isolation` of the process; tests build their own.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dynamod.api import ServiceContext, SpawnSpec
from dynamod_isolation import cgroups, instance, nssetup, wrappers
from dynamod_isolation.cgroups import Tree
from dynamod_isolation.hop import Home
from dynamod_isolation.options import (
    LIMITS,
    NamespaceOptions,
    parse_cgroup,
    parse_namespace,
)
from dynamod_isolation.userns import Handshake

ENV_ROOT = "DYNAMOD_CGROUP_ROOT"
ENV_JOIN = "DYNAMOD_CGROUP_JOIN"
EARLY = tuple(k for k, lim in LIMITS.items() if lim.during_fork)
LATE = tuple(k for k, lim in LIMITS.items() if not lim.during_fork)
# Retry delays for removing a cgroup whose processes are still dying
# (cgroup.kill is asynchronous): about 10 s in all.
REMOVE_DELAYS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0)


def stderr_log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} dynamod-isolation: {message}", file=sys.stderr, flush=True)


@dataclass
class Running:
    """What one spawn of a service was given."""

    name: str
    cgroup: str | None = None
    namespaces: frozenset[str] = frozenset()
    pid: int | None = None
    netns_fd: int | None = None
    handshake: Handshake | None = None
    report: nssetup.Report | None = None  # what the setup shell says
    setup_error: str = ""  # a failure of the manager's part of the setup
    oom_watch: int | None = None
    oom_seen: int = 0
    unapplied: dict[str, str] = field(default_factory=dict)


@dataclass
class History:
    """Per service, for the manager's lifetime (survives restarts)."""

    oom_kills: int = 0
    last_oom: float | None = None
    warned: bool = False


class Isolation:
    def __init__(self, *, root: str | None = None, log: Callable[[str], None] = stderr_log) -> None:
        # ``root``: the tree to use (else $DYNAMOD_CGROUP_ROOT, else found).
        self.root = root
        self.log = log
        self.tree: Tree | None = None
        self.tree_checked = False
        self.no_cgroups = ""  # why services run without cgroups
        self.owned_tree = False  # a per-instance tree, removed at exit
        self.tree_lock = -1  # flock on the tree: no other manager takes it
        self.refused = ""  # why services cannot start (the tree is another's)
        self.runtime_dir: str | None = None  # the manager's (from any service)
        self.running: dict[str, Running] = {}
        self.history: dict[str, History] = {}
        self.removals: dict[str, asyncio.TimerHandle] = {}
        self.inotify: Any = None
        self._home: Home | None = None
        # How a service gets into its cgroup ($DYNAMOD_CGROUP_JOIN): "hop"
        # (the manager moves in for the fork, hop.py), "shell" (a first exec
        # step joins), or "auto": hop when cgroup2 is mounted with
        # favordynmods. Without it a migration may wait for an RCU grace
        # period (milliseconds): fine in a child on another CPU, not on the
        # manager's loop.
        join = os.environ.get(ENV_JOIN, "auto")
        if join not in ("auto", "hop", "shell"):
            log(f"ignoring {ENV_JOIN}={join!r} (expected auto, hop or shell); using auto")
            join = "auto"
        self.join = join

    # ------------------------------------------------------------ the tree
    def get_tree(self, runtime_dir: str | None = None) -> Tree | None:
        """Find (once) the cgroup2 hierarchy and claim this manager's tree in
        it (``runtime_dir``: the manager's, which names it; see
        :mod:`dynamod_isolation.instance`)."""
        if runtime_dir is not None:
            self.runtime_dir = runtime_dir
        runtime_dir = self.runtime_dir
        if self.tree_checked:
            # Removed from outside (or by our own exit clean-up of a
            # per-instance tree): make it again, or do without.
            tree = self.tree
            if tree is not None and not os.path.isdir(tree.path) and not self._setup(tree):
                self.tree = None
            return self.tree
        self.tree_checked = True
        mounts = cgroups.cgroup2_mounts()
        explicit = self.root or os.environ.get(ENV_ROOT)
        if explicit:
            paths = [os.path.abspath(explicit)]
            mount = cgroups.mount_of(paths[0], mounts)
            if mount is None:
                return self._without(f"{paths[0]} ({ENV_ROOT}) is not inside a cgroup2 file system")
        else:
            mount = cgroups.preferred_mount(mounts)
            if mount is None:
                return self._without("no cgroup2 file system is mounted (see /proc/self/mounts)")
            if runtime_dir is None:
                self.tree_checked = False  # decided by the first hook with a service
                return None
            paths = instance.candidates(mount, runtime_dir)
        taken: list[str] = []
        for path in paths:
            tree = Tree(mount, path)
            try:
                if self._setup(tree, raise_in_use=True):
                    break
                return None
            except instance.TreeInUse as exc:
                taken.append(str(exc))
        else:
            # Only an explicit tree is taken in practice: the last candidate
            # has this manager's PID in its name.
            self.refused = taken[0] + (f"; {ENV_ROOT} must name a tree of this manager's own" if explicit
                                       else "; no tree of its own is free")
            self.log(f"services cannot start: {self.refused}")
            return None
        self.tree = tree
        if taken:
            self.log(f"{'; '.join(taken)}: using {tree.path} instead")
        self.owned_tree = not explicit and os.path.basename(tree.path) != instance.SYSTEM_TREE
        if not explicit:
            self._tidy(tree)
        if self.owned_tree:
            atexit.register(self.cleanup_at_exit)
        self._announce(tree)
        return tree

    def _tidy(self, tree: Tree) -> None:
        """Stale trees beside ours go; what a predecessor left in ours is
        said (see dynamod_isolation.instance)."""
        for gone in instance.sweep(os.path.dirname(tree.path), keep=tree.path):
            self.log(f"removed {gone}, left behind by a manager that is gone")
        if tree.populated(tree.path):
            # Ours by name: a predecessor's (dynamod-init restarted us, or the
            # last manager of this runtime directory was killed).
            self.log(f"{tree.path} has processes of a previous manager of this runtime directory "
                     "in it; each goes when its service is stopped")

    def _announce(self, tree: Tree) -> None:
        """Once: where services go, how they get there, what cannot apply."""
        ctl = ", ".join(sorted(tree.controllers)) or "none"
        if self.join == "auto":
            cheap = "favordynmods" in cgroups.mount_options(tree.mount)
            self.join = "hop" if cheap else "shell"
        how = ("the manager moves in for the fork" if self.join == "hop"
               else "a shell step joins before exec")
        self.log(f"services run in cgroups under {tree.path} (controllers: {ctl}; placement: {how})")
        if tree.missing:
            keys = [k for k, lim in LIMITS.items() if lim.controller in tree.missing]
            why = "; ".join(f"{c}: {r}" for c, r in sorted(tree.missing.items()))
            self.log(
                f"these limits cannot be applied here: {', '.join(keys)} ({why}); "
                "services start without them"
            )

    def _setup(self, tree: Tree, raise_in_use: bool = False) -> bool:
        """Claim the tree (the lock: this manager's alone) and enable its
        controllers."""
        if self.tree_lock >= 0:
            instance.release(self.tree_lock)
            self.tree_lock = -1
        try:
            self.tree_lock = instance.claim(tree.path)
            tree.setup()
        except instance.TreeInUse as exc:
            if raise_in_use:
                raise
            self._without(str(exc))
            return False
        except OSError as exc:
            self._without(f"cannot create {tree.path}: {exc.strerror or exc}")
            return False
        return True

    def _without(self, why: str) -> None:
        self.no_cgroups = why
        self.log(f"services run without cgroups: {why}; no limits, no whole-cgroup kill")
        return None

    # ----------------------------------------------------------- spawning
    def prepare(self, service: ServiceContext, spec: SpawnSpec) -> None:
        name = service.name
        sections = service.config.sections
        values = parse_cgroup(sections.get("cgroup", {}))[0]
        ns = parse_namespace(sections["namespace"])[0] if "namespace" in sections else None
        if ns is not None and "pid" in ns.namespaces and service.config.type == "forking":
            raise RuntimeError(
                "type 'forking' cannot run in a pid namespace: its pid file would name "
                "a PID of the namespace"
            )
        old = self.running.pop(name, None)
        if old is not None:
            self._release(old)
        timer = self.removals.pop(name, None)
        if timer is not None:
            timer.cancel()
        run = Running(name, namespaces=ns.namespaces if ns else frozenset())
        self.running[name] = run
        try:
            chain = self._cgroup_steps(service, run, values, spec)
            if ns is not None and ns.namespaces:
                chain += self._namespace_steps(service, run, ns, spec)
            if any(step == wrappers.SH for step in chain):
                chain += wrappers.env_fixup(spec.env)
        except Exception:
            self.running.pop(name, None)
            self._release(run)
            raise
        spec.wrapper[:0] = chain

    def _cgroup_steps(self, service: ServiceContext, run: Running, values: dict[str, str],
                      spec: SpawnSpec) -> list[str]:
        hist = self.history.setdefault(service.name, History())
        tree = self.get_tree(service.runtime_dir)
        if tree is None and self.refused:
            raise RuntimeError(self.refused)
        if tree is None:
            if values:
                run.unapplied = {k: self.no_cgroups for k in values}
                self._say_unapplied(service, hist, run.unapplied)
            return []
        path, fresh = tree.make(service.name)
        run.cgroup = path
        home = self.home(tree)
        if home is not None and (fresh or not tree.populated(path)):
            # Into the cgroup at fork time (see hop.py): no extra exec. Only
            # the limits harmless to the manager are in force meanwhile.
            # A reused cgroup gets every default first: it forgets old
            # limits, the late ones before we go in.
            early = {k: v for k, v in values.items() if k in EARLY}
            run.unapplied = tree.apply(path, early, keys=EARLY if fresh else LIMITS,
                                       defaults=not fresh)

            def after() -> None:
                failed = {**run.unapplied, **tree.apply(path, values, keys=LATE, defaults=False)}
                run.unapplied = {k: failed[k] for k in LIMITS if k in failed}
                if run.unapplied:
                    self._say_unapplied(service, hist, run.unapplied)

            spec.around_fork.append(home.into(path, after))
            run.oom_seen = 0 if fresh else (tree.oom_kills(path) or 0)
            return []
        run.unapplied = tree.apply(path, values)
        if run.unapplied:
            self._say_unapplied(service, hist, run.unapplied)
        run.oom_seen = tree.oom_kills(path) or 0
        return wrappers.join_cgroup(os.path.join(path, "cgroup.procs"), spec.env)

    def home(self, tree: Tree) -> Home | None:
        """The manager's way into service cgroups and back: when hopping is
        cheap (or asked for) and while it works."""
        if self.join != "hop":
            return None
        if self._home is None:
            self._home = Home(tree.mount, self.log)
        return self._home if self._home.usable() else None

    def _say_unapplied(self, service: ServiceContext, hist: History, unapplied: dict[str, str]) -> None:
        text = "; ".join(f"{k}: {why}" for k, why in unapplied.items())
        service.log(f"limits not applied: {text}")
        if not hist.warned:  # once per service in the manager's log
            hist.warned = True
            self.log(f"{service.name}: cannot apply {', '.join(unapplied)} ({text}); starting it anyway")

    def _namespace_steps(self, service: ServiceContext, run: Running, ns: NamespaceOptions,
                         spec: SpawnSpec) -> list[str]:
        chain: list[str] = []
        if "net" in ns.namespaces:
            from dynamod_isolation.netns import create_netns

            run.netns_fd = create_netns()
            chain += wrappers.join_netns(os.getpid(), run.netns_fd)
        chain += wrappers.unshare(ns.namespaces)
        host_ids = _setpriv_ids(spec.wrapper)
        keep_pwd = "PWD" in spec.env
        directory = os.path.join(service.runtime_dir, "isolation")
        setup = bool(ns.hostname or ns.mount_setup)
        fds = nssetup.choose_fds(ns, nssetup.taken_fds(spec.env, spec.pass_fds), report=setup)
        opener = ""
        if fds.report is not None:
            run.report = nssetup.Report(directory, service.name)
            run.report.hidden = {fd: d for d, fd in fds.tmp.items()}
            opener = run.report.opener(fds.report)
        if "user" in ns.namespaces:
            # Inside, the chain becomes root first, then [service.user] if set.
            uid, gid = host_ids or (0, 0)
            for what, ranges, ids in (("uid", ns.uid_map, {0, uid}), ("gid", ns.gid_map, {0, gid})):
                for inner in sorted(ids):
                    if not any(r.maps(inner) for r in ranges):
                        why = "its root" if inner == 0 else "the service's [service.user]"
                        raise RuntimeError(
                            f"user namespace: {what}-map does not map {what} {inner} ({why})"
                        )
            run.handshake = Handshake(directory, service.name, ns.uid_map, ns.gid_map)
            # Become the namespace's root before anything else: until then
            # the process's ids are unmapped there, and mount(8) takes an
            # unmapped (overflow) uid for an ordinary user and refuses.
            # This shell is still the host's root: it opens the report,
            # which the later ones (the namespace's root) could not.
            script = "\n".join(filter(None, [opener, run.handshake.script()]))
            chain += wrappers.setup_step(wrappers.exec_after(script, keep_pwd))
            chain += wrappers.become_root()
            opener = ""
        if setup:
            mounts = nssetup.mount_points() if ns.protect_system != "no" or ns.bind_mounts else []
            script = nssetup.setup_script(ns, mounts=mounts, unset_pwd=not keep_pwd, fds=fds,
                                          prologue=opener)
            chain += wrappers.setup_step(script)
        return chain

    def started(self, service: ServiceContext, pid: int) -> None:
        run = self.running.get(service.name)
        if run is None:
            return
        run.pid = pid
        if run.report is not None:
            run.report.start()
        if run.handshake is not None:

            def handshake_failed(why: str) -> None:
                run.setup_error = why
                service.log(why)

            run.handshake.start(pid, handshake_failed)
        if run.cgroup is not None and self.tree is not None:
            self._watch_oom(service, run)

    # ---------------------------------------------------------------- OOM
    def _watch_oom(self, service: ServiceContext, run: Running) -> None:
        events = os.path.join(run.cgroup or "", "memory.events")
        if not os.path.exists(events):
            return
        try:
            if self.inotify is None:
                from dynamod_isolation.inotify import Inotify

                self.inotify = Inotify(asyncio.get_running_loop())
            run.oom_watch = self.inotify.watch(events, lambda: self.check_oom(service, run, live=True))
        except (OSError, RuntimeError) as exc:
            self.log(f"{service.name}: cannot watch {events} for OOM kills: {exc}")

    def check_oom(self, service: ServiceContext, run: Running, live: bool) -> bool:
        """Count OOM kills in the service's cgroup since the last look; a
        live service that suffered one is failed with reason ``oom-killed``
        (its restart policy then applies)."""
        if run.cgroup is None or self.tree is None:
            return False
        count = self.tree.oom_kills(run.cgroup)
        if count is None or count <= run.oom_seen:
            return False
        hist = self.history.setdefault(service.name, History())
        hist.oom_kills += count - run.oom_seen
        hist.last_oom = time.time()
        run.oom_seen = count
        service.log("oom-killed: the kernel's OOM killer killed a process of this service "
                    f"(memory.events oom_kill = {count})")
        self.log(f"{service.name}: oom-killed")
        if live:
            service.fail("oom-killed")
        return True

    def exit_reason(self, service: ServiceContext, status: int | None) -> str | None:
        """Why the main process exited, when the plugin knows better than its
        wait status: the setup inside its namespaces failed (a bind mount,
        say; the setup shell told us which step and mount's own words), or
        the kernel's OOM killer took it (checked synchronously: the kernel
        counts ``oom_kill`` before the victim is gone)."""
        run = self.running.get(service.name)
        if run is None or status is None:
            return None
        if status != 0 and (run.setup_error or run.report is not None):
            why = run.setup_error or (run.report.reason() if run.report is not None else None)
            if why:
                service.log(f"namespace setup failed: {why}")
                return f"namespace setup failed: {why}"
        if not self.check_oom(service, run, live=False):
            return None
        return "oom-killed"

    # --------------------------------------------------------------- stop
    def record(self, service: ServiceContext) -> Running | None:
        """The service's record; for one this manager did not spawn (adopted
        from a predecessor that crashed: the cgroup path is the same), one
        made from its cgroup."""
        run = self.running.get(service.name)
        if run is not None:
            return run
        pid = service.main_pid
        if pid is None:
            return None
        tree = self.get_tree(service.runtime_dir)
        if tree is None or tree.name_of(pid) != service.name:
            return None
        run = Running(service.name, cgroup=tree.service_path(service.name), pid=pid)
        child = _first_child(pid)
        if child is not None and _ns(child, "pid") not in (None, _ns("self", "pid")):
            run.namespaces = frozenset({"pid"})
        run.oom_seen = tree.oom_kills(run.cgroup) or 0
        self.running[service.name] = run
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self._watch_oom(service, run)
        return run

    def kill(self, service: ServiceContext, sig: int) -> bool | None:
        run = self.record(service)
        if run is None:
            return None
        cgroup, tree = run.cgroup, self.tree
        if (sig == signal.SIGKILL and cgroup is not None and tree is not None
                and self._kill_cgroup(tree, cgroup)):
            return True
        if "pid" in run.namespaces and sig != signal.SIGKILL and run.pid is not None:
            # unshare --fork stays as the parent of the namespace's PID 1; it
            # ignores SIGTERM/SIGINT but dies of most other signals (and then
            # kills the service at once): signal the service itself. As for
            # any PID 1, a signal it has no handler for is ignored; SIGKILL
            # follows after stop-timeout.
            child = _first_child(run.pid)
            if child is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(child, sig)
                return True
        return None

    def stopped(self, service: ServiceContext) -> None:
        run = self.running.pop(service.name, None)
        if run is None:
            # Not spawned by this manager (adopted after a restart of svmgr):
            # its cgroup, if any, still has to go.
            tree = self.get_tree(service.runtime_dir)
            path = tree.service_path(service.name) if tree is not None else ""
            if not path or not os.path.isdir(path):
                return
            run = Running(service.name, cgroup=path)
        self.check_oom(service, run, live=False)
        self._release(run)
        if run.cgroup is not None and self.tree is not None:
            if self.tree.populated(run.cgroup):
                # The main process is gone; whatever it left behind
                # (double-forked daemons) goes with it.
                self._kill_cgroup(self.tree, run.cgroup)
            self._remove_later(service.name, run.cgroup, 0)

    def _kill_cgroup(self, tree: Tree, cgroup: str) -> bool:
        """Tree.kill, but only of a service cgroup of this manager's own
        tree, and never of the manager with it: after a failed way home it
        may still be in that cgroup."""
        if os.path.dirname(cgroup) != tree.path:
            self.log(f"not killing {cgroup}: not a service cgroup of {tree.path}")
            return False
        if self._home is not None and not self._home.usable():
            self._home.leave(cgroup)
        return tree.kill(cgroup)

    def _release(self, run: Running) -> None:
        if run.oom_watch is not None and self.inotify is not None:
            self.inotify.unwatch(run.oom_watch)
            run.oom_watch = None
        if run.netns_fd is not None:
            with contextlib.suppress(OSError):
                os.close(run.netns_fd)
            run.netns_fd = None
        if run.handshake is not None:
            run.handshake.close()
            run.handshake = None
        if run.report is not None:
            run.report.close()
            run.report = None

    def _remove_later(self, name: str, path: str, attempt: int) -> None:
        self.removals.pop(name, None)
        if self.tree is None or name in self.running:
            return  # started again meanwhile: the cgroup is in use
        if self.tree.remove(path):
            return
        if attempt + 1 >= len(REMOVE_DELAYS):
            self.log(f"{name}: cannot remove {path}: processes are still in it ({self.tree.procs(path)})")
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.removals[name] = loop.call_later(
            REMOVE_DELAYS[attempt + 1], self._remove_later, name, path, attempt + 1
        )

    def cleanup_at_exit(self) -> None:
        """A per-instance tree goes away with the manager (its services
        were stopped; the last removals may still be pending)."""
        tree = self.tree
        if tree is None:
            return
        for timer in self.removals.values():
            timer.cancel()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            leftovers = [e.path for e in os.scandir(tree.path) if e.is_dir()] if os.path.isdir(tree.path) else []
            if not all(tree.remove(p) for p in leftovers):
                time.sleep(0.02)
                continue
            tree.remove_tree_if_empty()
            return

    # ---------------------------------------------------------- questions
    def status(self, service: ServiceContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        run = self.record(service)
        if run is not None and run.cgroup is not None and self.tree is not None:
            out["cgroup"] = run.cgroup
            out.update(self.tree.stats(run.cgroup))
        if run is not None and run.namespaces:
            out["namespaces"] = sorted(run.namespaces)
        if run is not None and run.unapplied:
            out["limits-not-applied"] = sorted(run.unapplied)
        hist = self.history.get(service.name)
        if hist is not None and (hist.oom_kills or "memory-current" in out):
            out["oom-kills"] = hist.oom_kills
            if hist.last_oom is not None:
                out["last-oom"] = hist.last_oom
        return out

    def by_pid(self, pid: int) -> str | None:
        tree = self.tree if self.tree is not None else self.get_tree(self.runtime_dir)
        return tree.name_of(pid) if tree is not None else None


def _setpriv_ids(wrapper: list[str]) -> tuple[int, int] | None:
    """The ids the host's ``setpriv`` wrapper (``[service.user]``) switches
    to, if there is one."""
    uid = gid = None
    for arg in wrapper:
        if arg.startswith("--reuid="):
            uid = int(arg.split("=", 1)[1])
        elif arg.startswith("--regid="):
            gid = int(arg.split("=", 1)[1])
    if uid is None and gid is None:
        return None
    return (uid if uid is not None else 0, gid if gid is not None else 0)


def _ns(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _first_child(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            kids = f.read().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None
