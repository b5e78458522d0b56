"""Entry point of dynamod-hostnamed in group ``dynamod``: contributes the
``dynamod-hostnamed`` service to svmgr.

The service is not started at boot (``enabled = false``): as systemd's
hostnamed, timedated and localed, it starts on the first D-Bus call through
activation (see :mod:`dynamod_hostnamed.busfiles`) or by ``dynamodctl
start dynamod-hostnamed``. Write ``services/dynamod-hostnamed.toml`` to
replace this definition (``enabled = true`` to start it at boot).

Only the system's service manager gets it: the one dynamod-init started
(``DYNAMOD_INIT_FD`` is set when this module is imported, before svmgr
consumes the variable; a restarted svmgr and a container's get it too). A
per-user, test or demo svmgr does not: a daemon it activated would set the
machine's hostname and /etc. ``DYNAMOD_HOSTNAMED_SERVICE=1`` forces the
definition in, ``=0`` keeps it out (the same rule as dynamod-sd1bridge's).
"""

from __future__ import annotations

import json
import os
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


# Read at import: svmgr removes DYNAMOD_INIT_FD from its environment once it
# has opened the link, and later reloads must still see the same answer.
_UNDER_INIT = "DYNAMOD_INIT_FD" in os.environ
FORCE_ENV = "DYNAMOD_HOSTNAMED_SERVICE"


def wanted() -> bool:
    force = os.environ.get(FORCE_ENV, "")
    if force in ("0", "1"):
        return force == "1"
    return _UNDER_INIT


@dynamod.hookimpl
def dynamod_service_definitions() -> list[ServiceDefinition]:
    if not wanted():
        return []
    return [ServiceDefinition(name=SERVICE, text=service_toml(), origin="dynamod-hostnamed")]
