"""What a restarted svmgr needs to know about its predecessor's services.

svmgr writes, under its runtime directory, which services run with which main
PID (plus the PID's start time, so a recycled PID is never mistaken for the
service) and which oneshots already ran. When dynamod-init restarts a crashed
svmgr, the new one reads this file and adopts what is still alive instead of
starting second copies; exits that happened meanwhile arrive from init as
``Orphans``.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack

STATE_FILE = "services.state"
VERSION = 1


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when it is
    gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def save(runtime_dir: str, services: dict[str, dict[str, Any]]) -> None:
    path = os.path.join(runtime_dir, STATE_FILE)
    tmp = path + ".tmp"
    data = msgpack.packb({"version": VERSION, "services": services})
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load(runtime_dir: str) -> dict[str, dict[str, Any]]:
    try:
        with open(os.path.join(runtime_dir, STATE_FILE), "rb") as f:
            data = msgpack.unpackb(f.read(), raw=False)
    except (OSError, ValueError, msgpack.UnpackException):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return {}
    services = data.get("services")
    return services if isinstance(services, dict) else {}
