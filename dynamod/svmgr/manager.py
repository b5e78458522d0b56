"""The service manager: the engine, its executor and its publisher, wired.

Data flows one way: a request or an outcome becomes an event on the engine's
queue; :meth:`Manager.pump` drains it, hands the effects to the executor
(whose outcomes are new events) and what changed to the publisher, until
nothing is left. ``pump`` is the only loop and it does not nest: an event
posted while it runs (by a hook, a detector, the executor) is picked up by
the same pump.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable
from typing import Any

from dynamod.config.extensions import Extensions, builtin_extensions
from dynamod.config.model import SystemConfig
from dynamod.plugins import PluginHost
from dynamod.svmgr import states as st
from dynamod.svmgr.context import ServiceHandle
from dynamod.svmgr.engine import Engine, OperationFailed
from dynamod.svmgr.executor import Executor
from dynamod.svmgr.jobs import Job
from dynamod.svmgr.journal import Journal
from dynamod.svmgr.logdlink import LogdLink
from dynamod.svmgr.publish import Publisher
from dynamod.svmgr.reaper import Reaper

__all__ = ["Manager", "OperationFailed"]

# A pump that would go on longer than this many passes is a bug, not work:
# it stops and says so rather than starving the loop.
MAX_PASSES = 1_000_000


class LoopClock:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def now(self) -> float:
        return self.loop.time()

    def wall(self) -> float:
        import time

        return time.time()


class Manager:
    def __init__(
        self,
        config: SystemConfig,
        *,
        runtime_dir: str,
        extensions: Extensions | None = None,
        plugins: PluginHost | None = None,
        log: Callable[[str], None] | None = None,
        resume: bool = False,
    ) -> None:
        self.runtime_dir = runtime_dir
        self.ext = extensions or builtin_extensions()
        self.plugins = plugins
        self._log = log or (lambda m: print(f"dynamod-svmgr: {m}", file=sys.stderr, flush=True))
        self.loop = asyncio.get_event_loop()
        self.started_at = self.loop.time()  # CLOCK_MONOTONIC, as the engine's times
        self.reaper = Reaper(on_error=self.log)
        self.journal = Journal(runtime_dir, resume=resume)
        self.handles: dict[str, ServiceHandle] = {}
        self.engine = Engine(config, clock=LoopClock(self.loop), log=self.log,
                             service_log=lambda name, msg: self.handle(name).log(msg))
        self.executor = Executor(self)
        self.publisher = Publisher(self)
        self.logd = LogdLink(self)
        self.reload_lock = asyncio.Lock()
        self._pumping = False
        self._down_waiters: list[tuple[list[str] | None, asyncio.Future[None]]] = []
        for name in self.engine.services:
            self.handle(name)
        if plugins is not None:
            plugins.on_hook_error = lambda plugin, hook, exc: self.log(
                f"plugin {plugin!r} failed in {hook}: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ util
    def log(self, message: str) -> None:
        try:
            self._log(message)
        except Exception:
            pass

    def handle(self, name: str) -> ServiceHandle:
        h = self.handles.get(name)
        if h is None:
            h = self.handles[name] = ServiceHandle(self, name)
        return h

    def drop_handle(self, name: str) -> None:
        if name not in self.engine.services:
            self.handles.pop(name, None)

    @property
    def services(self) -> dict[str, Any]:
        return self.engine.services

    @property
    def supervisors(self) -> dict[str, Any]:
        return self.engine.supervisors

    @property
    def shutting_down(self) -> bool:
        return self.engine.shutting_down

    @property
    def listeners(self) -> list[Any]:
        return self.publisher.listeners

    @property
    def on_root_failure(self) -> Callable[[str], None] | None:
        return self.publisher.on_root_failure

    @on_root_failure.setter
    def on_root_failure(self, fn: Callable[[str], None] | None) -> None:
        self.publisher.on_root_failure = fn

    # ------------------------------------------------------------------ pump
    def pump(self) -> None:
        """Run the engine until it is idle (see the module docstring)."""
        if self._pumping:
            return
        self._pumping = True
        try:
            for _ in range(MAX_PASSES):
                self.engine.drain()
                effects, changes, job_events, alerts = self.engine.take()
                if changes or job_events or alerts:
                    self.publisher.publish(changes, job_events, alerts)
                for effect in effects:
                    self.executor.execute(effect)
                if not effects and not self.engine.busy:
                    break
            else:
                self.log("internal error: the engine did not settle; pausing it until the next event")
            self.journal.flush()
            self._wake_down_waiters()
        finally:
            self._pumping = False

    def _wake_down_waiters(self) -> None:
        if not self._down_waiters:
            return
        keep = []
        for names, fut in self._down_waiters:
            if fut.done():
                continue
            if self.engine.all_down(names):
                fut.set_result(None)
            else:
                keep.append((names, fut))
        self._down_waiters = keep

    async def wait_down(self, names: Iterable[str] | None = None) -> None:
        """Until every named service (every service) is down."""
        names = list(names) if names is not None else None
        if self.engine.all_down(names):
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self._down_waiters.append((names, fut))
        await fut

    # ------------------------------------------------------------ life cycle
    def start_all(self) -> None:
        self.engine.start_all()
        self.pump()

    async def shutdown(self) -> None:
        """Stop everything in reverse dependency order; return when all down."""
        self.engine.begin_shutdown()
        self.pump()
        await self.wait_down()

    # ------------------------------------------------------- control requests
    def get(self, name: str) -> Any:
        s = self.engine.services.get(name)
        if s is None:
            raise KeyError(name)
        return s

    def submit(self, name: str, jtype: str, mode: str = "replace") -> Job:
        """Queue a job and run the engine; the job may have ended already."""
        job = self.engine.request(name, jtype, mode)
        self.pump()
        return job

    async def run_job(self, name: str, jtype: str, mode: str = "replace", block: bool = True) -> Job:
        job = self.submit(name, jtype, mode)
        if block and not job.ended:
            fut: asyncio.Future[Any] = self.loop.create_future()
            self.publisher.job_futures.setdefault(job.id, []).append(fut)
            await fut
        return job

    def cancel_job(self, job_id: int) -> bool:
        ok = self.engine.cancel_job(job_id)
        self.pump()
        return ok

    def reset_failed(self, names: Iterable[str]) -> list[str]:
        done = self.engine.reset_failed(names)
        self.pump()
        return done

    def status_of(self, s: Any) -> dict[str, Any]:
        info = s.info()
        h = self.handle(s.name)
        if h.control_pids:
            info["control_pids"] = sorted(h.control_pids)
        if self.plugins is not None:
            try:
                extras = self.plugins.hook.dynamod_service_status(service=h)
            except Exception as exc:
                self.log(f"{s.name}: status hook failed: {exc}")
                extras = []
            for extra in extras or []:
                if isinstance(extra, dict):
                    info["extra"].update(extra)
        return info

    def tree(self) -> dict[str, Any]:
        return self.engine.tree()

    def service_by_pid(self, pid: int) -> str | None:
        for name, s in self.engine.services.items():
            if s.state in st.ALIVE and (pid in s.pids or pid in self.handle(name).control_pids):
                return name
        if self.plugins is not None:
            try:
                name = self.plugins.hook.dynamod_service_by_pid(pid=pid)
            except Exception as exc:
                self.log(f"service-by-pid hook failed: {exc}")
                name = None
            if isinstance(name, str) and name in self.engine.services:
                return name
        return None

    async def reload(self, config: SystemConfig) -> dict[str, list[str]]:
        """Apply a configuration: stop removed services and restart changed
        ones with their old configuration's stop settings, start added ones;
        leave unchanged ones alone (see Engine.reload_begin/finish)."""
        async with self.reload_lock:
            waiting = self.engine.reload_begin(config)
            self.pump()
            try:
                await self.wait_down(waiting)
            finally:
                result = self.engine.reload_finish(config)
                for name in self.engine.services:
                    self.handle(name)
                self.pump()
            return result

    def adopt(self, name: str, pid: int | None, main_pid: int | None, state: str = st.RUNNING,
              gone: bool = False) -> None:
        """Take over a service the previous svmgr ran (see adopt.py).
        ``gone``: its process already ended (its PID may even name another
        process by now): only its exit status, from init, is awaited."""
        gen = self.engine.adopt(name, pid, main_pid, state)
        if pid is None:
            return
        if gone:
            self.executor.await_orphan_status(name, gen, main_pid or pid)
        else:
            self.executor.watch_adopted(name, gen, main_pid or pid)

    def orphans_exited(self, exits: list[tuple[int, int]]) -> None:
        """Exit statuses init reaped for us (processes reparented to it)."""
        for pid, status in exits:
            self.reaper.unknown[pid] = status


def _job_message(job: Job) -> str:
    what = {"failed": "failed", "dependency": "is blocked", "timeout": "timed out",
            "canceled": "was canceled"}.get(job.result or "", job.result or "")
    text = f"{job.unit} {what}"
    if job.reason:
        text += f": {job.reason}"
    return text
