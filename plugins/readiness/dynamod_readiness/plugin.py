"""Entry point of the dynamod-readiness plugin (group ``dynamod``).

Registers the readiness types ``notify``, ``tcp-port``, ``exec`` and ``fd``,
and reports what live detectors know (notify socket, watchdog, errno) in
``dynamodctl status``. Each type lives in its own module; importing this one
stays cheap (no detector does anything until a service starts).
"""

from __future__ import annotations

from typing import Any

import dynamod
from dynamod.api import ReadinessType, ServiceContext
from dynamod_readiness import exec_check, fd, notify, status, tcp

READINESS_TYPES = [
    ReadinessType(
        name="notify",
        create=notify.NotifyDetector,
        options=notify.OPTIONS,
        validate=notify.validate,
        description="the service sends READY=1 over $NOTIFY_SOCKET (sd_notify protocol)",
    ),
    ReadinessType(
        name="tcp-port",
        create=tcp.TcpPortDetector,
        options=tcp.OPTIONS,
        validate=tcp.validate,
        description="a TCP connection to host:port succeeds",
    ),
    ReadinessType(
        name="exec",
        create=exec_check.ExecDetector,
        options=exec_check.OPTIONS,
        validate=exec_check.validate,
        description="a check command (check-exec) exits 0",
    ),
    ReadinessType(
        name="fd",
        create=fd.FdDetector,
        options=fd.OPTIONS,
        validate=fd.validate,
        description="the service writes a line to descriptor fd (s6/Dinit convention)",
    ),
]


@dynamod.hookimpl
def dynamod_readiness_types() -> list[ReadinessType]:
    return list(READINESS_TYPES)


@dynamod.hookimpl
def dynamod_service_status(service: ServiceContext) -> dict[str, Any] | None:
    return status.extra(service)
