"""The validated, in-memory form of service and supervisor files.

Everything here is produced by :mod:`dynamod.config.loader` and consumed by the
service manager; nothing in this module does I/O. Durations are seconds
(float), sizes are bytes (int), signals are signal numbers (int).

Equality is structural, which is what ``reload`` uses to decide whether a
service changed: two ``ServiceConfig`` objects that compare equal would run the
same process the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class RestartConfig:
    policy: str = "permanent"
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
class Diagnostic:
    """One problem found in the configuration. ``key`` is the dotted TOML key
    (``restart.delay``) or empty for whole-file problems."""

    file: str
    key: str
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{self.severity}: {where}: {self.message}"


@dataclass
class SystemConfig:
    """A whole configuration tree, validated as one system."""

    services: dict[str, ServiceConfig] = field(default_factory=dict)
    supervisors: dict[str, SupervisorConfig] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

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
