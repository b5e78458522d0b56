"""What the engine knows about each service and supervisor.

Plain records, mutated only by the engine (:mod:`dynamod.svmgr.engine`):
no asyncio, no ``os``, no plugin. Time comes from the engine's clock so that
tests can run the engine on a fake one.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from dynamod.config.model import ServiceConfig, SupervisorConfig
from dynamod.svmgr import states as st

if TYPE_CHECKING:
    from dynamod.svmgr.jobs import Job, RestartJob


class RestartWindow:
    """Timestamps of restarts within a sliding window (intensity)."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def count(self, window: float, now: float) -> int:
        while self.times and self.times[0] <= now - window:
            self.times.popleft()
        return len(self.times)

    def charge(self, limit: int, window: float, now: float) -> bool:
        """Record one restart at ``now``; False when it would exceed ``limit``."""
        if self.count(window, now) >= limit:
            return False
        self.times.append(now)
        return True

    def reset(self) -> None:
        self.times.clear()


class Service:
    """The runtime record of one service."""

    __slots__ = (
        "boot",
        "cause",
        "cfg",
        "deadline",
        "down_state",
        "exit",
        "explicit",
        "fail_kind",
        "gen",
        "held",
        "job",
        "load_error",
        "main_pid_",
        "name",
        "pending_at",
        "pending_failure",
        "pid",
        "ready_at",
        "ready_wait",
        "reason",
        "removed",
        "restart_count",
        "restart_job",
        "restarts",
        "resume",
        "signal_sent",
        "since",
        "spawn_pending",
        "start_exited",
        "started_at",
        "state",
        "status_text",
        "stop_sent",
        "stop_wait",
        "substate",
        "timer",
        "timer_kind",
        "timer_reason",
        "waiting_on",
    )

    def __init__(self, cfg: ServiceConfig, now: float) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.state = st.STOPPED
        self.reason = ""
        self.since = now  # wall clock of the last transition
        self.explicit = False  # started on its own (boot or dynamodctl start)
        self.held = False  # explicitly stopped: nothing may pull it in
        self.resume = False  # stopped because a dependency went down
        self.removed = False  # dropped by a reload: forget once down
        self.load_error: str | None = None  # its file was refused
        self.pid: int | None = None  # the spawned process
        self.main_pid_: int | None = None  # differs from pid for forking
        self.spawn_pending = False  # a Spawn effect is out, no pid yet
        self.exit: str | None = None
        self.restart_count = 0
        self.restarts = RestartWindow()
        self.waiting_on: set[str] = set()  # start frontier: unmet dependencies
        self.stop_wait: set[str] = set()  # dependents to see stopped first
        self.stop_sent = False  # the stop itself began (stop-exec or signal)
        self.signal_sent = False  # the stop signal was sent
        self.pending_failure: str | None = None  # reason to report at exit
        self.fail_kind = ""  # "timeout" when a timer caused the failure
        self.restart_job: RestartJob | None = None
        self.down_state: tuple[str, str] | None = None  # forced final state
        self.ready_wait = False  # a readiness wait is out
        self.timer = 0  # token of the one armed timer; 0: none
        self.timer_kind = ""  # "start", "stop-signal" or "stop-kill"
        self.timer_reason = ""
        self.start_exited = False  # a forking service's start process is gone
        self.gen = 0  # bumped at every spawn: stale events are ignored
        self.status_text = ""
        self.substate = ""
        self.deadline = 0.0  # engine time the current start/stop must end by
        self.job: Job | None = None  # the control job on this service
        self.cause: Job | None = None  # the job that set it moving, if any
        # Boot analysis (engine clock): when it last became pending, was
        # spawned, became ready.
        self.pending_at: float | None = None
        self.started_at: float | None = None
        self.ready_at: float | None = None
        # The first of each since svmgr started ([pending, started, ready]):
        # what `dynamodctl analyze` shows of the boot, whatever came after.
        self.boot: list[float | None] = [None, None, None]

    @property
    def main_pid(self) -> int | None:
        return self.main_pid_ if self.main_pid_ is not None else self.pid

    @property
    def pids(self) -> set[int]:
        out: set[int] = set()
        if self.pid is not None:
            out.add(self.pid)
        if self.main_pid_ is not None:
            out.add(self.main_pid_)
        return out

    @property
    def alive_or_exited(self) -> bool:
        return self.state in st.ALIVE or self.state == st.EXITED

    def info(self) -> dict[str, Any]:
        d = self.cfg.dependencies
        alive = self.state in st.ALIVE
        return {
            "name": self.name,
            "state": self.state,
            "type": self.cfg.type,
            "supervisor": self.cfg.supervisor,
            "description": self.cfg.description,
            "enabled": self.cfg.enabled,
            "masked": self.cfg.masked,
            "enablement": "masked" if self.cfg.masked else "enabled" if self.cfg.enabled else "disabled",
            "explicit": self.explicit,
            "pid": self.pid if alive else None,
            "main_pid": self.main_pid if alive else None,
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
            "dropin": self.cfg.dropin,
            "load_error": self.load_error,
            "restart_policy": self.cfg.restart.policy,
            "restart_budget": [self.cfg.restart.max_restarts, self.cfg.restart.max_restart_window],
            "job": self.job.summary() if self.job is not None else None,
            "extra": {},
        }


class Supervisor:
    __slots__ = ("cfg", "child_windows", "failures", "last_failure", "reason", "state", "window")

    def __init__(self, cfg: SupervisorConfig) -> None:
        self.cfg = cfg
        # Without escalation each child has a budget of its own.
        self.child_windows: dict[tuple[str, str], RestartWindow] = {}
        self.state = "running"  # or "restarting", "failed"
        self.reason = ""
        self.window = RestartWindow()
        self.failures = 0  # times its intensity was exceeded
        self.last_failure: float | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def escalates(self) -> bool:
        return bool(getattr(self.cfg, "escalate", False))

    def charge(self, child: tuple[str, str], now: float) -> bool:
        """Charge one restart of ``child``; False when the budget is spent:
        the supervisor's shared one when it escalates, else the child's."""
        limit, window = self.cfg.max_restarts, self.cfg.max_restart_window
        if self.escalates:
            return self.window.charge(limit, window, now)
        own = self.child_windows.setdefault(child, RestartWindow())
        if not own.charge(limit, window, now):
            return False
        self.window.times.append(now)  # shown in tree and status
        return True

    def reset(self) -> None:
        self.window.reset()
        self.child_windows.clear()

    def info(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "supervisor",
            "strategy": self.cfg.strategy,
            "state": self.state,
            "reason": self.reason,
            "restarts": self.window.count(self.cfg.max_restart_window, now),
            "max_restarts": self.cfg.max_restarts,
            "max_restart_window": self.cfg.max_restart_window,
            "escalate": self.escalates,
            "failures": self.failures,
            "last_failure": self.last_failure,
        }
