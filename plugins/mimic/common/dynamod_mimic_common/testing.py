"""Test helpers for mimic services: a private, system-bus-like dbus-daemon.

Usage from a plugin's conftest.py::

    from dynamod_mimic_common.testing import system_bus  # noqa: F401  (the fixture)

``system_bus`` starts a dbus-daemon with a config like Debian's system bus
(deny by default, holes punched by the policy files in
/usr/share/dbus-1/system.d plus any given ones), listening in a temp
directory, and sets ``DBUS_SYSTEM_BUS_ADDRESS`` for the test and its child
processes. :class:`PrivateBus` is the same as a context manager, for tests
that need several buses or extra policy files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

SYSTEM_POLICY_DIR = "/usr/share/dbus-1/system.d"

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
{extra}
</busconfig>
"""


NOBODY = 65534


class Namespace:
    """A private mount namespace with a fresh tmpfs on /run/systemd, held
    open by a sleeping process; :meth:`argv` wraps a command to run inside
    it (``nsenter``), optionally as another user. Needs root. The machine's
    /run/systemd is never touched."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             "mount -t tmpfs -o mode=0755 tmpfs /run/systemd && echo ok && exec sleep infinity"],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ok":
            raise RuntimeError("could not set up a mount namespace for /run/systemd")

    def argv(self, argv: list[str], user: int | None = None) -> list[str]:
        pre = ["nsenter", "-t", str(self.proc.pid), "-m", "--"]
        if user is not None:
            pre += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        return pre + argv

    def exists(self, path: str) -> bool:
        return subprocess.run(self.argv(["test", "-e", path])).returncode == 0

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


class PrivateBus:
    """A dbus-daemon of its own, configured like the system bus.

    ``policy_dirs`` are included as ``<includedir>`` (default: the system's
    /usr/share/dbus-1/system.d, which has the systemd1/hostname1/... files);
    ``policy_files`` as ``<include>``; ``open_policy=True`` adds a policy
    that lets everyone own and call everything (for layer tests with made-up
    names); ``socket`` listens elsewhere than in the temp directory (e.g.
    /run/dbus/system_bus_socket inside a container: write the config with
    this class, run ``command()`` as a service); ``service_dirs`` are
    ``<servicedir>`` directories of activation files (the bus runs their
    ``Exec=`` line itself, as root)."""

    def __init__(self, policy_dirs: Iterable[str] = (SYSTEM_POLICY_DIR,),
                 policy_files: Iterable[str | os.PathLike[str]] = (),
                 open_policy: bool = False, directory: str | None = None,
                 socket: str | None = None,
                 service_dirs: Iterable[str | os.PathLike[str]] = ()) -> None:
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="dynamod-bus-", dir="/tmp"))
        self.dir.mkdir(parents=True, exist_ok=True)
        # Non-root clients must reach the socket (pytest's tmp dirs are 0700).
        self.dir.chmod(0o755)
        self.socket = Path(socket) if socket else self.dir / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        extra = [f"  <includedir>{escape(d)}</includedir>" for d in policy_dirs]
        extra += [f"  <include>{escape(os.fspath(f))}</include>" for f in policy_files]
        # Activation: without <servicehelper>, dbus-daemon runs Exec= itself.
        extra += [f"  <servicedir>{escape(os.fspath(d))}</servicedir>" for d in service_dirs]
        if open_policy:
            extra.append('  <policy context="mandatory"><allow own="*"/>'
                         '<allow send_type="method_call"/></policy>')
        self.config = self.dir / "system.conf"
        self.config.write_text(_CONFIG.format(socket=escape(str(self.socket)), extra="\n".join(extra)))
        self.proc: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        """The dbus-daemon command line for this config (foreground)."""
        return ["dbus-daemon", f"--config-file={self.config}", "--nofork", "--nopidfile", "--nosyslog"]

    def start(self) -> PrivateBus:
        self.proc = subprocess.Popen(
            [*self.command(), "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.wait()
            raise RuntimeError(f"dbus-daemon did not start: {err.strip()}")
        return self

    def env(self) -> dict[str, str]:
        """os.environ with this bus as the system bus."""
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream:
                    stream.close()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def bus_call(bus, member: str, signature: str = "", body: list | None = None):
    """Call org.freedesktop.DBus.``member`` on the bus daemon; the reply."""
    from dbus_fast import Message

    return await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                  interface="org.freedesktop.DBus", member=member,
                                  signature=signature, body=body or []))


async def watch_signals(bus, name: str, on) -> str:
    """Match every signal from ``name`` and hand each to ``on(msg)``
    (filtered to the name's current owner); returns that owner."""
    from dbus_fast import MessageType

    owner = (await bus_call(bus, "GetNameOwner", "s", [name])).body[0]

    def handler(msg):
        if msg.message_type == MessageType.SIGNAL and msg.sender == owner:
            on(msg)

    bus.add_message_handler(handler)
    await bus_call(bus, "AddMatch", "s", [f"type='signal',sender='{name}'"])
    return owner


@pytest.fixture
def system_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    """A private system-like bus, exported as DBUS_SYSTEM_BUS_ADDRESS."""
    with PrivateBus() as bus:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield bus


@pytest.fixture
def open_system_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    """Like ``system_bus``, with an open policy (any name, any call)."""
    with PrivateBus(open_policy=True) as bus:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield bus
