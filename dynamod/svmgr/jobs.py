"""Jobs: what a start, stop or restart request became, and how it ended.

Every request on a service is a :class:`Job` with an id. It ends exactly
once, with one of :data:`RESULTS` (systemd's JobRemoved result strings, so
the systemd1 bridge passes them through). While it runs it collects what it
did to other services (``effects``): dependencies it started, dependents it
stopped or blocked.

A :class:`RestartJob` is the supervisor's restart of a group after a failure
(no control client waits for it): once all members are down it waits
``delay`` and starts the wanted ones again.
"""

from __future__ import annotations

from typing import Any

DONE = "done"
FAILED = "failed"
CANCELED = "canceled"
DEPENDENCY = "dependency"
TIMEOUT = "timeout"
SKIPPED = "skipped"
RESULTS = (DONE, FAILED, CANCELED, DEPENDENCY, TIMEOUT, SKIPPED)

# A report names at most this many other services (a stop of the root of a
# chain of thousands moves thousands): it has to fit one 64 KiB frame.
MAX_EFFECTS = 200

TYPES = ("start", "stop", "restart", "try-restart", "reload-or-restart")
MODES = ("replace", "fail")


class Job:
    __slots__ = ("confirming", "effects", "ended", "ending", "id", "mode", "reason", "result",
                 "seen_down", "type", "unit")

    def __init__(self, job_id: int, unit: str, jtype: str, mode: str) -> None:
        self.id = job_id
        self.unit = unit
        self.type = jtype
        self.mode = mode
        self.result: str | None = None
        self.reason = ""
        self.ended = False
        # Decided, published once the engine pass that decided it is over
        # (so that what the same pass did to other services is in effects).
        self.ending = False
        # Up with no readiness to wait for: done unless it dies within a
        # moment (START_CONFIRM).
        self.confirming = False
        # restart: the unit has been down since the job began
        self.seen_down = False
        # (service, state, reason) of other services, in order
        self.effects: list[tuple[str, str, str]] = []

    @property
    def kind(self) -> str:
        """What the job does to its unit now: a restart is a stop, then a start."""
        if self.type == "stop":
            return "stop"
        if self.type == "start":
            return "start"
        return "start" if self.seen_down else "restart"

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "unit": self.unit, "type": self.type, "state": "running"}

    def report(self) -> dict[str, Any]:
        """The job's end as the control protocol sends it (JobRemoved)."""
        last: dict[str, tuple[str, str]] = {}
        for name, state, reason in self.effects:
            last[name] = (state, reason)
        effects = [{"name": n, "state": s, "reason": r[:200]} for n, (s, r) in last.items()]
        report: dict[str, Any] = {
            "id": self.id,
            "unit": self.unit,
            "type": self.type,
            "result": self.result,
            "reason": self.reason[:1000],
            "effects": effects[:MAX_EFFECTS],
        }
        if len(effects) > MAX_EFFECTS:
            report["effects_omitted"] = len(effects) - MAX_EFFECTS
        return report


class RestartJob:
    """Services (and supervisors) restarted together."""

    __slots__ = ("armed", "delay", "members", "supervisors", "token", "waiting")

    def __init__(self, members: set[str], supervisors: set[str], delay: float) -> None:
        self.members = members
        self.supervisors = supervisors
        self.waiting: set[str] = set()
        self.delay = delay
        self.armed = False
        self.token = 0
