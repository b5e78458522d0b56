"""Entry point of the dynamod-readiness plugin (group ``dynamod``).

Registers the readiness types ``notify``, ``tcp-port``, ``exec`` and ``fd``,
and reports what live detectors know (notify socket, watchdog, errno) in
``dynamodctl status``. Each type's detector lives in its own module, imported
when a service of that type first starts: every svmgr start and every
``dynamodctl check`` loads this module, and the validators it needs are in
:mod:`dynamod_readiness.options`, which imports neither asyncio nor sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dynamod
from dynamod.api import Detector, ReadinessType, ServiceContext
from dynamod_readiness import options, status


def _detector(module: str, name: str) -> Callable[[ServiceContext], Detector]:
    """``ReadinessType.create`` for a detector class in ``module``."""

    def create(ctx: ServiceContext) -> Detector:
        from importlib import import_module

        cls: Callable[[ServiceContext], Detector] = getattr(
            import_module(f"dynamod_readiness.{module}"), name
        )
        return cls(ctx)

    create.__qualname__ = create.__name__ = name
    return create


READINESS_TYPES = [
    ReadinessType(
        name="notify",
        create=_detector("notify", "NotifyDetector"),
        options=options.NOTIFY_OPTIONS,
        validate=options.validate_notify,
        description="the service sends READY=1 over $NOTIFY_SOCKET (sd_notify protocol)",
    ),
    ReadinessType(
        name="tcp-port",
        create=_detector("tcp", "TcpPortDetector"),
        options=options.TCP_OPTIONS,
        validate=options.validate_tcp,
        description="a TCP connection to host:port succeeds",
    ),
    ReadinessType(
        name="exec",
        create=_detector("exec_check", "ExecDetector"),
        options=options.EXEC_OPTIONS,
        validate=options.validate_exec,
        description="a check command (check-exec) exits 0",
    ),
    ReadinessType(
        name="fd",
        create=_detector("fd", "FdDetector"),
        options=options.FD_OPTIONS,
        validate=options.validate_fd,
        description="the service writes a line to descriptor fd (s6/Dinit convention)",
    ),
]


@dynamod.hookimpl
def dynamod_readiness_types() -> list[ReadinessType]:
    return list(READINESS_TYPES)


@dynamod.hookimpl
def dynamod_service_status(service: ServiceContext) -> dict[str, Any] | None:
    return status.extra(service)
