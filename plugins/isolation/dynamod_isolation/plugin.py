"""Entry point of the dynamod-isolation plugin (group ``dynamod``).

Owns the ``[cgroup]`` and ``[namespace]`` tables of service files and forwards
the spawn, kill, status and stop hooks to the process's one
:class:`dynamod_isolation.runtime.Isolation`. Importing this module does no
I/O and imports nothing heavy (pyroute2 is loaded only when a service asks
for a network namespace), so ``dynamodctl check`` stays cheap.
"""

from __future__ import annotations

from typing import Any

import dynamod
from dynamod.api import ConfigSection, ServiceContext, SpawnSpec
from dynamod_isolation.options import validate_cgroup, validate_namespace

_isolation: Any = None


def isolation() -> Any:
    """The process's :class:`Isolation`, made on first use."""
    global _isolation
    if _isolation is None:
        from dynamod_isolation.runtime import Isolation

        _isolation = Isolation()
    return _isolation


@dynamod.hookimpl
def dynamod_config_sections() -> list[ConfigSection]:
    return [
        ConfigSection(
            "cgroup",
            validate_cgroup,
            "cgroup v2 limits: memory-max, memory-high, cpu-weight, cpu-max, pids-max, io-weight",
        ),
        ConfigSection(
            "namespace",
            validate_namespace,
            "namespaces (pid, mnt, net, uts, ipc, user, cgroup), private-tmp, protect-system, "
            "bind-mounts",
        ),
    ]


@dynamod.hookimpl
def dynamod_spawn_prepare(service: ServiceContext, spec: SpawnSpec) -> None:
    isolation().prepare(service, spec)


@dynamod.hookimpl
def dynamod_service_started(service: ServiceContext, pid: int) -> None:
    isolation().started(service, pid)


@dynamod.hookimpl
def dynamod_service_kill(service: ServiceContext, signal: int) -> bool | None:
    return isolation().kill(service, signal)


@dynamod.hookimpl
def dynamod_service_exit_reason(service: ServiceContext, pid: int, status: int | None) -> str | None:
    return isolation().exit_reason(service, status)


@dynamod.hookimpl
def dynamod_service_stopped(service: ServiceContext) -> None:
    isolation().stopped(service)


@dynamod.hookimpl
def dynamod_service_status(service: ServiceContext) -> dict[str, Any]:
    return isolation().status(service)


@dynamod.hookimpl
def dynamod_service_by_pid(pid: int) -> str | None:
    return isolation().by_pid(pid)
