"""dynamod states and facts in systemd's vocabulary (documented in
docs/mimic.md, "State mapping")."""

from __future__ import annotations

import re
import signal

UINT64_MAX = 2**64 - 1

#: dynamod service state -> (ActiveState, SubState)
SERVICE_STATES: dict[str, tuple[str, str]] = {
    "stopped": ("inactive", "dead"),
    # Waiting for dependencies: real systemd shows a unit whose start job
    # waits as inactive (dead), with the job.
    "pending": ("inactive", "dead"),
    "starting": ("activating", "start"),
    "waiting-ready": ("activating", "start"),
    "running": ("active", "running"),
    "exited": ("active", "exited"),
    "stopping": ("deactivating", "stop-sigterm"),
    "restarting": ("activating", "auto-restart"),
    "failed": ("failed", "failed"),
    # A requires-dependency failed or was stopped: not this unit's own
    # failure, so not listed by --failed (systemd: a failed dependency job
    # leaves the unit inactive).
    "blocked": ("inactive", "dead"),
}

#: supervisor state -> (ActiveState, SubState) of its slice
SUPERVISOR_STATES: dict[str, tuple[str, str]] = {
    "running": ("active", "active"),
    "failed": ("failed", "failed"),
}

RESTART_POLICIES = {"permanent": "always", "transient": "on-failure", "temporary": "no"}

#: dynamod job type -> systemd JobType
JOB_TYPES = {"start": "start", "stop": "stop", "restart": "restart",
             "try-restart": "try-restart", "reload-or-restart": "restart"}

CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3
_EXITED = re.compile(r"exited (-?\d+)")
_KILLED = re.compile(r"killed by (SIG[A-Z0-9+-]+)")


def service_states(svc: dict) -> tuple[str, str]:
    active, sub = SERVICE_STATES.get(svc.get("state", ""), ("inactive", "dead"))
    if svc.get("state") == "stopping" and svc.get("control_pids"):
        sub = "stop"  # a stop-exec command is running
    return active, sub


def supervisor_states(node: dict) -> tuple[str, str]:
    return SUPERVISOR_STATES.get(node.get("state", ""), ("inactive", "dead"))


def exit_code_status(exit: str | None) -> tuple[int, int]:
    """(ExecMainCode, ExecMainStatus) from dynamod's ``exit`` text."""
    if not exit:
        return 0, 0
    m = _EXITED.search(exit)
    if m:
        return CLD_EXITED, int(m.group(1))
    m = _KILLED.search(exit)
    if m:
        try:
            signum = int(signal.Signals[m.group(1)])
        except KeyError:
            signum = 0
        return (CLD_DUMPED if "core" in exit else CLD_KILLED), signum
    return 0, 0


def service_result(svc: dict) -> str:
    """Service.Result: why the last run ended badly, or ``success``."""
    state = svc.get("state")
    if state not in ("failed", "restarting"):
        return "success"
    reason = (svc.get("reason") or "").lower()
    if "timeout" in reason or "timed out" in reason:
        return "timeout"
    if "watchdog" in reason:
        return "watchdog"
    if "restart" in reason and ("limit" in reason or "intensity" in reason or "too many" in reason):
        return "start-limit-hit"
    code, _ = exit_code_status(svc.get("exit") or reason)
    if code == CLD_EXITED:
        return "exit-code"
    if code == CLD_KILLED:
        return "signal"
    if code == CLD_DUMPED:
        return "core-dump"
    return "resources"


def load_state(svc: dict) -> str:
    return "error" if svc.get("load_error") else "loaded"


def usec(t: float | None) -> int:
    """CLOCK_REALTIME µs, 0 for unknown."""
    return int(t * 1_000_000) if t else 0
