"""Carries out the engine's effects on the asyncio side.

The only place in svmgr that spawns, signals, arms timers, runs readiness
detectors and calls the spawn/kill/exit hooks of plugins. Each outcome goes
back to the engine as an event (``engine.on_*``) followed by
``manager.pump()``. An effect whose generation is stale (the start it
belongs to was called off) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

from dynamod.api import ReadinessFailed
from dynamod.config.units import format_duration
from dynamod.svmgr import effects as fx
from dynamod.svmgr import states as st
from dynamod.svmgr.kinds import kind_of
from dynamod.svmgr.spawn import SpawnError, build_spec, spawn
from dynamod.svmgr.waitstatus import describe_status

if TYPE_CHECKING:
    from dynamod.svmgr.manager import Manager

# How long to wait for init's Orphans message after an adopted process is gone.
STATUS_GRACE = 2.0


class _Start:
    """What the executor holds for one start of a service."""

    __slots__ = ("detector", "gen", "task")

    def __init__(self, gen: int) -> None:
        self.gen = gen
        self.detector: Any = None
        self.task: asyncio.Task[None] | None = None


class Executor:
    def __init__(self, manager: Manager) -> None:
        self.m = manager
        self.engine = manager.engine
        self.loop = manager.loop
        self.starts: dict[str, _Start] = {}
        self._handlers = {
            fx.Spawn: self._spawn, fx.AwaitReady: self._await_ready,
            fx.CancelReady: self._cancel_ready, fx.Teardown: self._teardown,
            fx.Kill: self._kill, fx.ArmTimer: self._arm, fx.ArmJobTimer: self._arm_job,
            fx.ArmJobConfirm: self._arm_job_confirm,
            fx.ReadPidFile: self._read_pid_file, fx.WatchPid: self._watch_pid,
            fx.RunStopExec: self._run_stop_exec, fx.Started: self._started,
            fx.Stopped: self._stopped, fx.Forget: self._forget,
        }

    def execute(self, effect: fx.Effect) -> None:
        handler = self._handlers[type(effect)]
        try:
            handler(effect)  # type: ignore[operator]
        except Exception as exc:  # one failing effect must not stop the others
            self.m.log(f"internal error carrying out {type(effect).__name__} for "
                       f"{getattr(effect, 'name', '?')}: {type(exc).__name__}: {exc}")

    def _current(self, name: str, gen: int) -> Any:
        s = self.engine.services.get(name)
        return s if s is not None and s.gen == gen else None

    def _post(self, fn: Any, *args: Any) -> None:
        fn(*args)
        self.m.pump()

    # ---------------------------------------------------------------- spawn
    def _spawn(self, e: fx.Spawn) -> None:
        s = self._current(e.name, e.gen)
        if s is None or not s.spawn_pending:
            return
        ctx = self.m.handle(e.name)
        start = _Start(e.gen)
        old = self.starts.get(e.name)
        if old is not None:
            self._close_start(e.name, old)
        self.starts[e.name] = start
        try:
            rtype = self.m.ext.readiness.get(s.cfg.readiness.type)
            if rtype is None:
                raise SpawnError(self.m.ext.missing_hint("readiness", s.cfg.readiness.type))
            if kind_of(s.cfg).uses_detector:
                start.detector = rtype[0].create(ctx)
            spec = build_spec(s.cfg)
            invocation = self.m.journal.invocation()
            spec.env["INVOCATION_ID"] = invocation
            if start.detector is not None:
                start.detector.prepare(spec)
            if self.m.plugins is not None:
                self.m.plugins.hook.dynamod_spawn_prepare(service=ctx, spec=spec)
            # A run-once service leaves proof of its spawn (journal.intent).
            marker = self.m.journal.intent(e.name, invocation) if kind_of(s.cfg).runs_to_completion else None
            spawned = spawn(spec, marker)
        except Exception as exc:
            self._close_start(e.name, start)
            reason = str(exc) if isinstance(exc, SpawnError) else f"{type(exc).__name__}: {exc}"
            self.engine.on_spawn_failed(e.name, e.gen, reason)
            return
        # Recorded before anything else can happen (see journal.py).
        self.m.journal.spawned(e.name, invocation, spawned.pid, marker)
        for problem in spawned.problems:
            self.m.log(f"{e.name}: {problem}")
        gen = e.gen
        self.m.reaper.watch(spawned.pid, lambda pid, status: self._exited(e.name, gen, pid, status))
        self.m.logd.add_output(e.name, spawned)
        self.engine.on_spawned(e.name, gen, spawned.pid)

    def _exited(self, name: str, gen: int, pid: int, status: int | None) -> None:
        hint = ""
        s = self._current(name, gen)
        if s is not None and s.state != st.STOPPING and self.m.plugins is not None and pid == s.main_pid:
            try:
                better = self.m.plugins.hook.dynamod_service_exit_reason(
                    service=self.m.handle(name), pid=pid, status=status)
            except Exception as exc:
                self.m.log(f"{name}: exit reason hook failed: {exc}")
                better = None
            if isinstance(better, str) and better:
                hint = better
        self._post(self.engine.on_exit, name, gen, pid, status, hint)

    def _started(self, e: fx.Started) -> None:
        if self.m.plugins is not None and self._current(e.name, e.gen) is not None:
            self.m.plugins.hook.dynamod_service_started(service=self.m.handle(e.name), pid=e.pid)

    def _stopped(self, e: fx.Stopped) -> None:
        if self.m.plugins is not None:
            self.m.plugins.hook.dynamod_service_stopped(service=self.m.handle(e.name))

    # ------------------------------------------------------------ readiness
    def _await_ready(self, e: fx.AwaitReady) -> None:
        start = self.starts.get(e.name)
        if start is None or start.gen != e.gen or start.detector is None:
            self.engine.on_ready(e.name, e.gen)
            return
        if getattr(start.detector, "immediate", False):
            self.engine.on_ready(e.name, e.gen)
            return
        start.task = self.loop.create_task(self._wait_ready(e.name, e.gen, start.detector))

    async def _wait_ready(self, name: str, gen: int, detector: Any) -> None:
        try:
            await detector.wait()
        except asyncio.CancelledError:
            raise
        except ReadinessFailed as exc:
            self._post(self.engine.on_ready_failed, name, gen, str(exc) or "readiness check failed")
            return
        except Exception as exc:
            self._post(self.engine.on_ready_failed, name, gen,
                       f"readiness detector error: {type(exc).__name__}: {exc}")
            return
        self._post(self.engine.on_ready, name, gen)

    def _cancel_ready(self, e: fx.CancelReady) -> None:
        start = self.starts.get(e.name)
        if start is not None and start.gen == e.gen and start.task is not None:
            start.task.cancel()
            start.task = None

    def _teardown(self, e: fx.Teardown) -> None:
        start = self.starts.get(e.name)
        if start is not None and start.gen == e.gen:
            self._close_start(e.name, start)

    def _close_start(self, name: str, start: _Start) -> None:
        if start.task is not None:
            start.task.cancel()
            start.task = None
        if start.detector is not None:
            try:
                start.detector.close()
            except Exception as exc:
                self.m.log(f"{name}: readiness detector close failed: {exc}")
            start.detector = None
        if self.starts.get(name) is start:
            del self.starts[name]

    # ---------------------------------------------------------------- kill
    def _kill(self, e: fx.Kill) -> None:
        s = self.engine.services.get(e.name)
        if self.m.plugins is not None and s is not None and e.pids and e.pids[0] == s.pid:
            try:
                handled = self.m.plugins.hook.dynamod_service_kill(service=self.m.handle(e.name), signal=e.signal)
            except Exception as exc:
                self.m.log(f"{e.name}: kill hook failed: {exc}")
                handled = False
            # A process spawned a moment ago may still be in its wrapper, not
            # yet in the plugin's cgroup: SIGKILL also goes to the process
            # group, so a kill can never miss it.
            if handled and e.signal != signal.SIGKILL:
                return
        for i, pid in enumerate(e.pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if i == 0 and e.group:
                    os.killpg(pid, e.signal)
                else:
                    os.kill(pid, e.signal)

    # --------------------------------------------------------------- timers
    def _arm(self, e: fx.ArmTimer) -> None:
        self.loop.call_at(e.at, self._post, self.engine.on_timer, e.name, e.token)

    def _arm_job(self, e: fx.ArmJobTimer) -> None:
        self.loop.call_later(e.delay, self._post, self.engine.on_restart_job_timer, e.job, e.token)

    def _arm_job_confirm(self, e: fx.ArmJobConfirm) -> None:
        self.loop.call_later(e.delay, self._post, self.engine.on_job_confirm, e.job_id)

    # -------------------------------------------------------------- forking
    def _read_pid_file(self, e: fx.ReadPidFile) -> None:
        path = e.path
        try:
            with open(path, encoding="ascii") as f:
                pid = int(f.read(64).strip())
            if pid <= 0:
                raise ValueError
        except (OSError, ValueError):
            self.engine.on_pid_file(e.name, e.gen, None, f"pid file {path} missing or invalid after start")
            return
        if pid not in self.m.reaper.unknown and not _exists(pid):
            self.engine.on_pid_file(e.name, e.gen, None,
                                    f"pid file {path} names PID {pid}, which is not running")
            return
        self.engine.on_pid_file(e.name, e.gen, pid, "")

    def _watch_pid(self, e: fx.WatchPid) -> None:
        name, gen, pid = e.name, e.gen, e.pid
        if _parent_of(pid) == os.getpid() or pid in self.m.reaper.unknown:
            self.m.reaper.watch(pid, lambda p, status: self._exited(name, gen, p, status))
            return
        # Not our child (we are not its subreaper): watch with a pidfd; the
        # exit status cannot be known.
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            # Neither running nor reaped by us: the pid names nothing (a stale
            # pid file, a daemon that died and was reaped by its parent).
            self.engine.on_main_pid_missing(name, gen, pid)
            return
        except OSError:
            self.engine.on_exit(name, gen, pid, None)
            return

        def gone() -> None:
            self.loop.remove_reader(fd)
            os.close(fd)
            self._exited(name, gen, pid, None)

        self.loop.add_reader(fd, gone)

    def watch_adopted(self, name: str, gen: int, pid: int) -> None:
        """A process of the previous svmgr: init reaps it and tells us its
        status (Orphans), a pidfd tells us when to look."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            self.await_orphan_status(name, gen, pid)
            return

        def readable() -> None:
            self.loop.remove_reader(fd)
            os.close(fd)
            self._adopted_gone(name, gen, pid, 0.0)

        self.loop.add_reader(fd, readable)

    def await_orphan_status(self, name: str, gen: int, pid: int) -> None:
        self.loop.call_soon(self._adopted_gone, name, gen, pid, 0.0)

    def _adopted_gone(self, name: str, gen: int, pid: int, waited: float) -> None:
        status = self.m.reaper.unknown.pop(pid, None)
        if status is None and waited < STATUS_GRACE:
            self.loop.call_later(0.1, self._adopted_gone, name, gen, pid, waited + 0.1)
            return
        self._post(self.engine.on_exit, name, gen, pid, status)

    # ------------------------------------------------------------ stop-exec
    def _run_stop_exec(self, e: fx.RunStopExec) -> None:
        """Run ``stop-exec`` as a control process of the service. Its output
        goes to the service's log; if it fails while the service is still
        up, the stop signal follows at once. The control process itself gets
        no longer than ``stop-timeout``: then its process group is killed."""
        s = self._current(e.name, e.gen)
        if s is None:
            return
        ctx = self.m.handle(e.name)
        try:
            spec = build_spec(s.cfg, s.cfg.shutdown.stop_exec)
            if s.main_pid is not None:
                spec.env["MAINPID"] = str(s.main_pid)
            spawned = spawn(spec)
        except SpawnError as exc:
            self.engine.on_stop_exec_failed(e.name, e.gen, f"stop-exec failed: {exc}")
            return
        pid = spawned.pid
        ctx.control_pids.add(pid)
        self.m.logd.add_output(e.name, spawned)
        timeout = e.timeout

        def overdue() -> None:
            ctx.log(f"stop-exec still running after {format_duration(timeout)}; killing it")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

        kill_timer = self.loop.call_later(timeout, overdue)
        name, gen = e.name, e.gen

        def done(_pid: int, status: int) -> None:
            kill_timer.cancel()
            ctx.control_pids.discard(pid)
            if status != 0:
                self._post(self.engine.on_stop_exec_failed, name, gen, f"stop-exec {describe_status(status)}")

        self.m.reaper.watch(pid, done)

    # -------------------------------------------------------------- forget
    def _forget(self, e: fx.Forget) -> None:
        start = self.starts.get(e.name)
        if start is not None:
            self._close_start(e.name, start)
        self.m.drop_handle(e.name)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None
