"""Runtime records of services and supervisors (what the manager mutates).

The transitions themselves live in :mod:`dynamod.svmgr.manager`; these classes
only hold state and answer questions about it. ``Service`` is also the
:class:`dynamod.api.ServiceContext` that hooks and detectors receive.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dynamod.config.model import ServiceConfig, SupervisorConfig
from dynamod.svmgr import states as st
from dynamod.svmgr.logbuf import LogBuffer, PipeReader

if TYPE_CHECKING:
    from dynamod.svmgr.manager import Manager

# A waiter inspects each transition (service, old, new) and returns a result
# to resolve its future with, or None to keep waiting.
Waiter = Callable[["Service", str, str], Any]


class RestartWindow:
    """Timestamps of restarts within a sliding window (intensity)."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def count(self, window: float, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        while self.times and self.times[0] <= now - window:
            self.times.popleft()
        return len(self.times)

    def charge(self, limit: int, window: float) -> bool:
        """Record one restart; False when it would exceed ``limit``."""
        now = time.monotonic()
        if self.count(window, now) >= limit:
            return False
        self.times.append(now)
        return True

    def reset(self) -> None:
        self.times.clear()


class Service:
    def __init__(self, manager: Manager, cfg: ServiceConfig) -> None:
        self.manager = manager
        self.cfg = cfg
        self.state = st.STOPPED
        self.reason = ""
        self.since = time.time()
        self.explicit = False  # started on its own (boot or dynamodctl start)
        self.held = False  # explicitly stopped: nothing may pull it in
        self.resume = False  # stopped because a dependency went down
        self.removed = False  # dropped by a reload: forget once down
        self.pid: int | None = None  # the spawned process
        self._main_pid: int | None = None  # differs from pid for forking
        self.control_pids: set[int] = set()
        self.exit: str | None = None
        self.restart_count = 0
        self.restarts = RestartWindow()
        self.waiting_on: set[str] = set()  # start frontier: unmet dependencies
        self.stop_wait: set[str] = set()  # dependents to see stopped first
        self.stop_sent = False  # the stop itself began (stop-exec or signal)
        self.signal_sent = False  # the stop signal was sent
        self.pending_failure: str | None = None  # reason to report at exit
        self.restart_job: Any = None
        self.down_state: tuple[str, str] | None = None  # forced final state
        self.detector: Any = None
        self.ready_task: asyncio.Task[None] | None = None
        self.timers: list[asyncio.TimerHandle] = []
        self.generation = 0
        self.status_text = ""
        self.substate = ""
        self.deadline = 0.0  # loop time the current start/stop must finish by
        self.log_buffer = LogBuffer()
        self.readers: list[PipeReader] = []
        self.waiters: list[tuple[asyncio.Future[Any], Waiter]] = []

    # -- ServiceContext ----------------------------------------------------
    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def config(self) -> ServiceConfig:
        return self.cfg

    @property
    def runtime_dir(self) -> str:
        return self.manager.runtime_dir

    @property
    def main_pid(self) -> int | None:
        return self._main_pid if self._main_pid is not None else self.pid

    @property
    def pids(self) -> set[int]:
        out = set(self.control_pids)
        if self.pid is not None:
            out.add(self.pid)
        if self._main_pid is not None:
            out.add(self._main_pid)
        return out

    def set_main_pid(self, pid: int) -> None:
        self.manager.adopt_main_pid(self, pid)

    def set_status_text(self, text: str) -> None:
        self.status_text = text

    def log(self, message: str) -> None:
        self.log_buffer.append(f"[dynamod] {message}")

    def fail(self, reason: str) -> None:
        self.manager.fail_service(self, reason)

    def owns_pid(self, pid: int) -> bool:
        return pid in self.pids or self.manager.service_by_pid(pid) == self.name

    def extend_timeout(self, seconds: float) -> None:
        self.manager.extend_timeout(self, seconds)

    def set_substate(self, text: str) -> None:
        self.substate = text

    async def run_helper(self, argv: Sequence[str], timeout: float) -> int | None:
        from dynamod.svmgr.helpers import run_helper

        return await run_helper(self, argv, timeout)

    # -- helpers -------------------------------------------------------------
    def cancel_timers(self) -> None:
        for t in self.timers:
            t.cancel()
        self.timers.clear()

    def info(self) -> dict[str, Any]:
        d = self.cfg.dependencies
        return {
            "name": self.name,
            "state": self.state,
            "type": self.cfg.type,
            "supervisor": self.cfg.supervisor,
            "description": self.cfg.description,
            "enabled": self.cfg.enabled,
            "explicit": self.explicit,
            "pid": self.pid if self.state in st.ALIVE else None,
            "main_pid": self.main_pid if self.state in st.ALIVE else None,
            "since": self.since,
            "restarts": self.restart_count,
            "reason": self.reason,
            "exit": self.exit,
            "status_text": self.status_text,
            "substate": self.substate,
            "readiness": self.cfg.readiness.type,
            "requires": list(d.requires),
            "wants": list(d.wants),
            "after": list(d.after),
            "before": list(d.before),
            "source": self.cfg.source,
            "extra": {},
        }


class Supervisor:
    def __init__(self, cfg: SupervisorConfig) -> None:
        self.cfg = cfg
        self.state = "running"  # or "restarting", "failed"
        self.reason = ""
        self.window = RestartWindow()
        self.failures = 0  # times its intensity was exceeded
        self.last_failure: float | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    def charge(self) -> bool:
        return self.window.charge(self.cfg.max_restarts, self.cfg.max_restart_window)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "supervisor",
            "strategy": self.cfg.strategy,
            "state": self.state,
            "reason": self.reason,
            "restarts": self.window.count(self.cfg.max_restart_window),
            "max_restarts": self.cfg.max_restarts,
            "max_restart_window": self.cfg.max_restart_window,
            "failures": self.failures,
            "last_failure": self.last_failure,
        }
