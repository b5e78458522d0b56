"""In-VM check (copied to /usr/lib/dynamod/vmtest/ of the test image): the
real hostnamectl on the booted system's bus. With
``dynamod.test.sethostname=NAME`` on the kernel command line it first runs
``hostnamectl set-hostname NAME`` (the first call D-Bus-activates
dynamod-hostnamed through svmgr)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_PAGER": "cat", "SYSTEMD_COLORS": "0",
       "LC_ALL": "C"}  # fmt: skip


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=60)


def check_hostnamectl(ctx: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while not os.path.exists("/run/dbus/system_bus_socket"):
        if time.monotonic() > deadline:
            raise AssertionError("no system bus socket after 30 s")
        time.sleep(0.2)
    data: dict[str, Any] = {"kernel_before": socket.gethostname()}
    want = ctx["cmdline"].get("dynamod.test.sethostname")
    if want:
        r = _run("hostnamectl", "set-hostname", want)
        assert r.returncode == 0, f"hostnamectl set-hostname exited {r.returncode}: {r.stderr.strip()}"
    r = _run("hostnamectl", "hostname")
    assert r.returncode == 0, f"hostnamectl hostname exited {r.returncode}: {r.stderr.strip()}"
    data["hostnamectl"] = r.stdout.strip()
    data["kernel"] = socket.gethostname()
    with open("/etc/hostname", encoding="utf-8") as f:
        data["etc_hostname"] = f.read().strip()
    r = _run("dynamodctl", "status", "dynamod-hostnamed")
    data["service"] = r.stdout
    return data
