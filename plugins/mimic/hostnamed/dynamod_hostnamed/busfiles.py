"""The D-Bus activation and policy files of the three names.

``dynamod-hostnamed install-bus-files [--root DIR]`` writes

* ``/usr/local/share/dbus-1/system-services/org.freedesktop.{hostname1,timedate1,locale1}.service``
  (the first of dbus-daemon's standard system service directories, so they
  win over systemd's own files of the same name in /usr/share without
  touching files a package owns): ``Exec=`` asks svmgr to start the
  dynamod-hostnamed service (and runs the daemon directly when no svmgr
  is running); ``SystemdService=dynamod-hostnamed.service`` is what a bus
  started with ``--systemd-activation`` asks the systemd1 bridge for;
* ``/etc/dbus-1/system.d/dynamod-hostnamed.conf``: root may own the names,
  everyone may call them (the daemon checks who may change what).
"""

from __future__ import annotations

import shlex
import sys

from dynamod_hostnamed.fsroot import Root

BUS_NAMES = ("org.freedesktop.hostname1", "org.freedesktop.timedate1", "org.freedesktop.locale1")
SERVICE_DIR = "/usr/local/share/dbus-1/system-services"
POLICY_FILE = "/etc/dbus-1/system.d/dynamod-hostnamed.conf"


def activation_file(name: str, python: str | None = None, args: tuple[str, ...] = ()) -> str:
    """``args`` are added to the command (``--root DIR`` for an image or a test
    tree: used when the daemon runs without svmgr)."""
    exec_line = shlex.join([python or sys.executable, "-m", "dynamod_hostnamed", "activate", *args])
    return (
        "# Written by dynamod-hostnamed install-bus-files.\n"
        "[D-BUS Service]\n"
        f"Name={name}\n"
        f"Exec={exec_line}\n"
        "User=root\n"
        "SystemdService=dynamod-hostnamed.service\n"
    )


def policy_file(names: tuple[str, ...] = BUS_NAMES) -> str:
    own = "\n".join(f'    <allow own="{n}"/>' for n in names)
    talk = "\n".join(
        f'    <allow send_destination="{n}"/>\n    <allow receive_sender="{n}"/>' for n in names
    )
    return f"""<?xml version="1.0"?>
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- Written by dynamod-hostnamed install-bus-files. -->
<busconfig>
  <policy user="root">
{own}
  </policy>
  <policy context="default">
{talk}
  </policy>
</busconfig>
"""


def install(root: Root, python: str | None = None, args: tuple[str, ...] = ()) -> list[str]:
    """Write every file under ``root``; returns their paths inside the tree."""
    written = []
    for name in BUS_NAMES:
        rel = f"{SERVICE_DIR}/{name}.service"
        root.write(rel, activation_file(name, python, args))
        written.append(rel)
    root.write(POLICY_FILE, policy_file())
    written.append(POLICY_FILE)
    return written
