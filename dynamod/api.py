"""Types a plugin author works with: what hooks receive and what they return.

Kept free of heavy imports so that dynamodctl, the config checker and PID 1 can
import it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from dynamod.config.model import ServiceConfig

# A validator for one plugin-owned TOML table or one detector's options: it
# receives the table as written and returns (key, message) pairs, one per
# problem; an empty list means valid. ``key`` is relative to the table.
Validator = Callable[[dict[str, Any]], list[tuple[str, str]]]


class ReadinessFailed(Exception):
    """Raised by a detector's ``wait`` when the service cannot become ready;
    the message is the reason ``dynamodctl status`` shows."""


@dataclass
class SpawnSpec:
    """How a service process is about to be started. Hooks may change it
    before the spawn; the host spawns ``wrapper + argv`` so that wrappers such
    as ``setpriv``/``unshare`` or an exec shim run before the service's own
    program (the spawn stays on the cheap vfork path: no ``preexec_fn``).

    ``pass_fds`` are kept open in the child at the same numbers (every other
    descriptor of the manager is closed in the child).

    ``around_fork`` holds context managers the host enters, in order, just
    before the fork and leaves, in reverse, as soon as it returned (or
    failed): for state a child inherits from its parent at fork time and that
    a wrapper could only set at the price of one more exec, such as the
    cgroup (the isolation plugin moves the manager into the service's cgroup
    for that moment). They run on the manager's loop, which does nothing else
    meanwhile: keep them to a few system calls. An exception on entering one
    fails the start with its message; one on leaving is logged, and the
    process, already running, is kept."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    wrapper: list[str] = field(default_factory=list)
    pass_fds: list[int] = field(default_factory=list)
    around_fork: list[AbstractContextManager[Any]] = field(default_factory=list)


class ServiceContext(Protocol):
    """The host's view of one service, handed to hooks and detectors."""

    name: str
    config: ServiceConfig
    runtime_dir: str

    @property
    def pids(self) -> set[int]:
        """PIDs the host knows belong to the service (main and control)."""

    @property
    def main_pid(self) -> int | None: ...

    def set_main_pid(self, pid: int) -> None:
        """Adopt ``pid`` as the main process (sd_notify MAINPID=, forking)."""

    def set_status_text(self, text: str) -> None:
        """Free-form status line shown by ``dynamodctl status``."""

    def log(self, message: str) -> None:
        """Append a line to the service's log buffer, marked as from dynamod."""

    def fail(self, reason: str) -> None:
        """Declare a running service failed (a missed watchdog, for example);
        the host stops it and applies its restart policy."""

    def owns_pid(self, pid: int) -> bool:
        """Whether ``pid`` is a process of this service: its main or control
        process, or (with an isolation plugin) any process in its cgroup."""

    def extend_timeout(self, seconds: float) -> None:
        """Push the current start or stop deadline to at least ``seconds``
        from now (sd_notify's EXTEND_TIMEOUT_USEC)."""

    def set_substate(self, text: str) -> None:
        """A word shown next to the state (``reloading``, ``stopping``);
        empty to clear."""

    async def run_helper(self, argv: Sequence[str], timeout: float) -> int | None:
        """Run ``argv`` once the way the service runs (its user, environment
        plus ``MAINPID``, working directory), its output going to the
        service's log. Return its exit code (``-N`` when killed by signal N),
        or None when it ran longer than ``timeout`` seconds and was killed.
        Cancelling the call kills it too. Raises an exception whose message
        is the reason when it cannot be started. Use this rather than
        ``asyncio.create_subprocess_exec``: the manager reaps every child
        itself, so asyncio would never see the exit."""


class Detector(Protocol):
    """One readiness wait for one start of a service. Created fresh for every
    start (boot, restart, ``dynamodctl start``)."""

    def prepare(self, spec: SpawnSpec) -> None:
        """Before spawn: add environment variables or descriptors."""

    async def wait(self) -> None:
        """After spawn: return when the service is ready, raise
        :class:`ReadinessFailed` when it cannot be. The host applies the
        timeout and cancels this coroutine when the process exits first."""

    def close(self) -> None:
        """After the service stopped (or the wait failed): release resources.
        A detector that keeps watching (a watchdog) stops here."""


@dataclass(frozen=True)
class ReadinessType:
    """A readiness detector type a plugin provides.

    ``options`` names the keys this type accepts in ``[readiness]`` besides
    ``type`` and ``timeout``; ``validate`` checks their values at config load.
    ``create`` builds a :class:`Detector` for one start."""

    name: str
    create: Callable[[ServiceContext], Detector]
    options: frozenset[str] = frozenset()
    validate: Validator | None = None
    description: str = ""


@dataclass(frozen=True)
class ConfigSection:
    """A top-level table of service files owned by a plugin (``[cgroup]``)."""

    name: str
    validate: Validator
    description: str = ""


@dataclass(frozen=True)
class ServiceDefinition:
    """A service file contributed by a plugin. ``text`` is the TOML of a
    service file; a file of the same name in the config directory replaces
    it. ``origin`` names the plugin for messages."""

    name: str
    text: str
    origin: str
