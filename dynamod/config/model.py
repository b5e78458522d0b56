"""The validated, in-memory form of service and supervisor files.

Everything here is produced by :mod:`dynamod.config.loader` and consumed by the
service manager; nothing in this module does I/O. Durations are seconds
(float), sizes are bytes (int), signals are signal numbers (int).

Equality is structural, which is what ``reload`` uses to decide whether a
service changed: two ``ServiceConfig`` objects that compare equal would run the
same process the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

SERVICE_TYPES = ("simple", "oneshot", "forking", "notify")
RESTART_POLICIES = ("permanent", "transient", "temporary")
STRATEGIES = ("one-for-one", "one-for-all", "rest-for-one")
# What the system does when the root supervisor fails. "emergency": ask
# dynamod-init for the emergency shell (unprivileged: stop everything and
# exit non-zero); poweroff/reboot/halt: an ordered shutdown of that kind;
# "exit": stop everything, svmgr exits 3; "none": log only.
FAILURE_ACTIONS = ("emergency", "poweroff", "reboot", "halt", "exit", "none")
ROOT_SUPERVISOR = "root"
# The largest max-restarts of a service or supervisor: its restart times are
# kept in memory, and it is sent over the control socket.
MAX_RESTARTS = 10_000


def default_restart_policy(service_type: str) -> str:
    """The restart policy of a service whose config does not name one: a
    oneshot is a task that ran (retrying a failed one is a choice its
    config makes), every other type a daemon that is meant to stay up."""
    return "temporary" if service_type == "oneshot" else "permanent"


@dataclass(frozen=True)
class RestartConfig:
    """``policy=None`` means "not given": the :class:`ServiceConfig` holding
    it replaces it by :func:`default_restart_policy` of its type, so
    ``ServiceConfig.restart.policy`` is always one of RESTART_POLICIES."""

    policy: str | None = None
    delay: float = 1.0
    max_restarts: int = 5
    max_restart_window: float = 60.0


@dataclass(frozen=True)
class ReadinessConfig:
    """``type`` names a detector; ``options`` holds the detector's own keys
    (``port``, ``check-exec``...) after the detector's plugin validated them,
    under their TOML (kebab-case) names."""

    type: str = "none"
    timeout: float = 30.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DependencyConfig:
    requires: tuple[str, ...] = ()
    wants: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShutdownConfig:
    stop_signal: int = 15
    stop_timeout: float = 10.0
    stop_exec: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    exec: tuple[str, ...]
    source: str = ""
    type: str = "simple"
    supervisor: str = ROOT_SUPERVISOR
    description: str = ""
    enabled: bool = True
    workdir: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    environment_file: tuple[str, ...] = ()
    user: str | None = None
    group: str | None = None
    supplementary_groups: tuple[str, ...] = ()
    pid_file: str | None = None
    restart: RestartConfig = field(default_factory=RestartConfig)
    readiness: ReadinessConfig = field(default_factory=ReadinessConfig)
    dependencies: DependencyConfig = field(default_factory=DependencyConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    # Plugin-owned sections ([cgroup], [namespace], ...), validated by the
    # plugin that registered the section; kept raw under their TOML names.
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    # From the override directory (dynamod/config/overrides.py): masked
    # services cannot be started; ``dropin`` is the drop-in file merged
    # over ``source`` ("" when there is none).
    masked: bool = False
    dropin: str = ""

    def __post_init__(self) -> None:
        if self.restart.policy is None:
            # Frozen: the resolved policy is set once, at construction.
            resolved = replace(self.restart, policy=default_restart_policy(self.type))
            object.__setattr__(self, "restart", resolved)

    @property
    def restart_policy(self) -> str:
        """The effective restart policy (never None)."""
        return self.restart.policy or default_restart_policy(self.type)

    def order_deps(self) -> set[str]:
        """Services this one starts after when both are starting (requires,
        wants and after; ``before`` edges are added by the graph)."""
        d = self.dependencies
        return {*d.requires, *d.wants, *d.after}


@dataclass(frozen=True)
class SupervisorConfig:
    name: str
    source: str = ""
    parent: str | None = None
    strategy: str = "one-for-one"
    max_restarts: int = 5
    max_restart_window: float = 60.0
    on_failure: str = "emergency"  # root only: see FAILURE_ACTIONS
    # Share one restart budget among all children and fail (escalate to the
    # parent, or run on-failure at the root) when it is spent; without it
    # each child has a budget of its own (see dynamod/svmgr/supervision.py).
    escalate: bool = False


@dataclass(frozen=True)
class RefusedService:
    """A service file (or plugin definition) that was refused: the service
    exists, but cannot run until its config is fixed.

    ``name`` is the declared name, or the file's stem when no valid name
    could be read. ``errors`` are the reasons, each ``FILE: KEY: MESSAGE``.
    ``dependencies`` and ``supervisor`` are what could be parsed of them
    (empty and None when nothing could), so that what it requires, and what
    requires it, can still be shown and ordered."""

    name: str
    source: str
    errors: tuple[str, ...]
    dependencies: DependencyConfig = field(default_factory=DependencyConfig)
    supervisor: str | None = None


def printable(text: str) -> str:
    # Keys and messages quote what was in a file; a control character (an
    # escape sequence, a NUL) must not reach a terminal or a log raw.
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in the configuration. ``key`` is the dotted TOML key
    (``restart.delay``) or empty for whole-file problems; ``line`` the line
    of the file it is on (1-based) where it could be found."""

    file: str
    key: str
    message: str
    severity: str = "error"  # or "warning"
    line: int | None = None

    @property
    def location(self) -> str:
        """``FILE: KEY`` (or ``FILE``), printable."""
        return printable(f"{self.file}: {self.key}" if self.key else self.file)

    def __str__(self) -> str:
        return f"{self.severity}: {self.location}: {printable(self.message)}"


@dataclass
class SystemConfig:
    """A whole configuration tree, validated as one system."""

    services: dict[str, ServiceConfig] = field(default_factory=dict)
    supervisors: dict[str, SupervisorConfig] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # Services whose file was refused, by name: never in ``services``, never
    # silently gone. A dependency on one is kept (and not "unknown").
    refused: dict[str, RefusedService] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


class ConfigError(Exception):
    """Raised when a configuration has errors; carries every diagnostic."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        errs = [d for d in diagnostics if d.severity == "error"]
        super().__init__("\n".join(str(d) for d in errs) or "invalid configuration")
