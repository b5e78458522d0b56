"""Entry point of dynamod-hostnamed in group ``dynamod``: contributes the
``dynamod-hostnamed`` service to svmgr.

The service is not started at boot (``enabled = false``): as systemd's
hostnamed, timedated and localed, it starts on the first D-Bus call through
activation (see :mod:`dynamod_hostnamed.busfiles`) or by ``dynamodctl
start dynamod-hostnamed``. Write ``services/dynamod-hostnamed.toml`` to
replace this definition (``enabled = true`` to start it at boot).
"""

from __future__ import annotations

import json
import sys

import dynamod
from dynamod.api import ServiceDefinition

SERVICE = "dynamod-hostnamed"


def service_toml(python: str | None = None) -> str:
    """The service file. The daemon runs under the interpreter svmgr runs
    under (the one this distribution is installed into)."""
    exe = json.dumps(python or sys.executable)
    return f"""\
[service]
name = "{SERVICE}"
description = "hostname, time and locale settings on D-Bus (hostname1, timedate1, locale1)"
exec = [{exe}, "-m", "dynamod_hostnamed"]
type = "notify"
enabled = false

[restart]
policy = "permanent"
delay = "1s"
max-restarts = 5
max-restart-window = "60s"

[readiness]
type = "notify"
timeout = "10s"

[dependencies]
wants = ["dbus"]
after = ["dbus"]

[shutdown]
stop-signal = "SIGTERM"
stop-timeout = "5s"
"""


@dynamod.hookimpl
def dynamod_service_definitions() -> list[ServiceDefinition]:
    return [ServiceDefinition(name=SERVICE, text=service_toml(), origin="dynamod-hostnamed")]
