"""What the engine asks the outside world to do.

The engine never touches a process, a timer or a plugin itself: each
transition appends effects, and after the queue is drained the executor
(:mod:`dynamod.svmgr.executor`) carries them out in order. Their outcomes
come back as events (``Engine.on_*``). Every effect that concerns one start
of a service carries that start's generation: the executor drops an effect
whose generation is stale, so nothing is ever spawned for a start that was
called off meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Spawn:
    """Start the service's main process (with its readiness detector)."""

    name: str
    gen: int


@dataclass(slots=True)
class AwaitReady:
    """Run the readiness detector's wait; report Ready or ReadyFailed."""

    name: str
    gen: int


@dataclass(slots=True)
class CancelReady:
    """A stop began while the readiness wait was out: cancel the wait (the
    detector stays, e.g. for EXTEND_TIMEOUT_USEC during the stop)."""

    name: str
    gen: int


@dataclass(slots=True)
class Teardown:
    """The start is over: cancel the readiness wait, close the detector."""

    name: str
    gen: int


@dataclass(slots=True)
class Kill:
    """Signal the service's processes (``pids``; through the isolation hook,
    the whole cgroup). ``group``: also the process group of ``pids[0]``."""

    name: str
    signal: int
    pids: tuple[int, ...]
    group: bool = True


@dataclass(slots=True)
class ArmTimer:
    """Call ``Engine.on_timer(name, token)`` at engine time ``at``."""

    name: str
    token: int
    at: float


@dataclass(slots=True)
class ArmJobTimer:
    """Call ``Engine.on_restart_job_timer(job, token)`` after ``delay`` seconds."""

    job: object
    token: int
    delay: float


@dataclass(slots=True)
class ArmJobConfirm:
    """Call ``Engine.on_job_confirm(job_id)`` after ``delay`` seconds."""

    job_id: int
    delay: float


@dataclass(slots=True)
class ReadPidFile:
    """A forking service's start process exited 0: read its pid file and
    report PidFile(pid or error)."""

    name: str
    gen: int
    path: str


@dataclass(slots=True)
class WatchPid:
    """Report the exit of ``pid`` (not necessarily our child) as Exited."""

    name: str
    gen: int
    pid: int


@dataclass(slots=True)
class RunStopExec:
    """Run ``stop-exec`` as a control process; report StopExecFailed when it
    cannot start or exits non-zero."""

    name: str
    gen: int
    timeout: float


@dataclass(slots=True)
class Started:
    """Tell plugins a process was spawned (``dynamod_service_started``)."""

    name: str
    gen: int
    pid: int


@dataclass(slots=True)
class Stopped:
    """Tell plugins the service has no process left (``dynamod_service_stopped``)."""

    name: str


@dataclass(slots=True)
class Forget:
    """A removed service is down: release what the executor holds for it."""

    name: str


Effect = (
    Spawn | AwaitReady | CancelReady | Teardown | Kill | ArmTimer | ArmJobTimer | ArmJobConfirm | ReadPidFile | WatchPid
    | RunStopExec | Started | Stopped | Forget
)
