"""Entry point of dynamod-sd1bridge (group ``dynamod``): installing the
distribution makes the ``dynamod-sd1bridge`` service known (after dbus, so
it finds the system bus at once when there is one; it serves
/run/systemd/private without one). A file services/dynamod-sd1bridge.toml
in the config directory replaces this definition.

Only the system's service manager gets it: the one dynamod-init started
(``DYNAMOD_INIT_FD`` is set when this module is imported, before svmgr
consumes the variable; a restarted svmgr and a container's get it too). A
per-user, test or demo svmgr does not: its bridge would take over the
machine's /run/systemd and system bus name. ``DYNAMOD_SD1BRIDGE_SERVICE=1``
forces the definition in, ``=0`` keeps it out.
"""

from __future__ import annotations

import os
import sys

import dynamod
from dynamod.api import ServiceDefinition

NAME = "dynamod-sd1bridge"


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def definition_text(python: str = sys.executable) -> str:
    return f"""\
[service]
name = "{NAME}"
description = "systemd1 D-Bus API for systemctl (dynamod-sd1bridge)"
exec = [{_toml_str(python)}, "-m", "dynamod_sd1bridge"]

[restart]
delay = "500ms"

[dependencies]
after = ["dbus"]
"""


# Read at import: svmgr removes DYNAMOD_INIT_FD from its environment once it
# has opened the link, and later reloads must still see the same answer.
_UNDER_INIT = "DYNAMOD_INIT_FD" in os.environ


def wanted() -> bool:
    force = os.environ.get("DYNAMOD_SD1BRIDGE_SERVICE", "")
    if force in ("0", "1"):
        return force == "1"
    return _UNDER_INIT


@dynamod.hookimpl
def dynamod_service_definitions() -> list[ServiceDefinition]:
    if not wanted():
        return []
    return [ServiceDefinition(name=NAME, text=definition_text(), origin="dynamod-sd1bridge")]
