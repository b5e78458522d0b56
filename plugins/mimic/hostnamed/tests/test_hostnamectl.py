"""The real hostnamectl (systemd 252) against dynamod-hostnamed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hostnamed_harness import START_HOSTNAME


def test_status_with_the_real_systemd1_bridge(make_machine) -> None:
    machine = make_machine(bridge=True)
    (machine.root / "etc/machine-info").write_text(
        'PRETTY_HOSTNAME="Lennart\'s Tablet"\nICON_NAME=computer-tablet\nCHASSIS=tablet\n'
        "DEPLOYMENT=production\nLOCATION='Left Rack, 2nd Shelf'\n"
    )
    (machine.root / "etc/hostname").write_text("tablet\n")
    out = machine.run("hostnamectl", "status", check=True).stdout
    assert "Static hostname: tablet" in out
    assert f"Transient hostname: {START_HOSTNAME}" in out  # the kernel's differs
    assert "Pretty hostname: Lennart's Tablet" in out
    assert "Icon name: computer-tablet" in out
    assert "Chassis: tablet" in out
    assert "Deployment: production" in out
    assert "Location: Left Rack, 2nd Shelf" in out
    assert "Operating System: Test OS 1" in out
    # From dynamod-sd1bridge's Manager: the architecture, and no
    # virtualization line (the bridge answers "").
    assert "Architecture: x86-64" in out
    assert "Virtualization:" not in out
    assert "Kernel: Linux " in out


def test_hostname_and_set_hostname_all_three(machine) -> None:
    assert machine.run("hostnamectl", "hostname", check=True).stdout == f"{START_HOSTNAME}\n"
    (machine.root / "etc/machine-info").write_text("PRETTY_HOSTNAME=old\nHARDWARE_VENDOR=Acme\n")
    machine.run("hostnamectl", "set-hostname", "web-01", check=True)
    assert (machine.root / "etc/hostname").read_text() == "web-01\n"
    assert machine.hostname() == "web-01"
    # a plain name clears the pretty one; other machine-info lines stay
    assert (machine.root / "etc/machine-info").read_text() == "HARDWARE_VENDOR=Acme\n"
    assert machine.run("hostnamectl", "hostname", check=True).stdout == "web-01\n"
    show = machine.run("hostnamectl", "--static").stdout
    assert show == "web-01\n"


def test_pretty_name_is_simplified_by_the_client(machine) -> None:
    machine.run("hostnamectl", "set-hostname", "Lennart's PC", check=True)
    assert (machine.root / "etc/machine-info").read_text() == "PRETTY_HOSTNAME=\"Lennart's PC\"\n"
    static = (machine.root / "etc/hostname").read_text().strip()
    assert static and static == machine.hostname()
    assert machine.run("hostnamectl", "--pretty", check=True).stdout == "Lennart's PC\n"


def test_static_transient_pretty_separately(machine) -> None:
    machine.run("hostnamectl", "set-hostname", "--static", "box", check=True)
    assert (machine.root / "etc/hostname").read_text() == "box\n"
    assert machine.hostname() == "box"  # the static name has priority
    assert not (machine.root / "etc/machine-info").exists()
    # a transient name with a static one set is remembered, not applied
    machine.run("hostnamectl", "set-hostname", "--transient", "dhcp-7", check=True)
    assert machine.hostname() == "box"
    # without a static name it is applied
    machine.run("hostnamectl", "set-hostname", "--static", "", check=True)
    assert not (machine.root / "etc/hostname").exists()
    assert machine.hostname() == "dhcp-7"
    machine.run("hostnamectl", "set-hostname", "--transient", "dhcp-8", check=True)
    assert machine.hostname() == "dhcp-8"
    machine.run("hostnamectl", "set-hostname", "--pretty", "Büro Rechner", check=True)
    assert (machine.root / "etc/machine-info").read_text() == 'PRETTY_HOSTNAME="Büro Rechner"\n'
    assert machine.hostname() == "dhcp-8"
    out = machine.run("hostnamectl", "--json=short", check=True).stdout
    assert '"HostnameSource":"transient"' in out
    assert '"PrettyHostname":"Büro Rechner"' in out


@pytest.mark.parametrize(
    ("verb", "value", "key", "stored"),
    [
        ("icon-name", "computer-server", "ICON_NAME", "computer-server"),
        ("chassis", "server", "CHASSIS", "server"),
        ("deployment", "staging", "DEPLOYMENT", "staging"),
        ("location", "Berlin, Germany", "LOCATION", '"Berlin, Germany"'),
    ],
)
def test_machine_info_verbs(machine, verb: str, value: str, key: str, stored: str) -> None:
    machine.run("hostnamectl", verb, value, check=True)
    assert (machine.root / "etc/machine-info").read_text() == f"{key}={stored}\n"
    assert machine.run("hostnamectl", verb, check=True).stdout == f"{value}\n"
    machine.run("hostnamectl", verb, "", check=True)
    assert not (machine.root / "etc/machine-info").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["set-hostname", "--static", "no spaces"], "Invalid static hostname 'no spaces'"),
        (["set-hostname", "--transient", "a..b"], "Invalid transient hostname 'a..b'"),
        (["set-hostname", "--static", "x" * 65], "Invalid static hostname"),
        (["chassis", "toaster"], "Invalid chassis 'toaster'"),
        (["deployment", "two words"], "Invalid deployment"),
        (["location", "line\nbreak"], "Invalid location"),
        (["icon-name", "a/b"], "Invalid icon name"),
    ],
)
def test_invalid_input_is_refused(machine, argv: list[str], message: str) -> None:
    out = machine.run("hostnamectl", *argv)
    assert out.returncode == 1, out
    assert message in out.stderr
    assert not (machine.root / "etc/hostname").exists()
    assert not (machine.root / "etc/machine-info").exists()
    assert machine.hostname() == START_HOSTNAME


@pytest.mark.parametrize(
    "argv",
    [["set-hostname", "evil"], ["set-hostname", "--pretty", "Evil"], ["chassis", "vm"],
     ["icon-name", "x"], ["deployment", "x"], ["location", "x"], ["set-hostname", "--transient", "evil"]],
)  # fmt: skip
def test_unprivileged_callers_are_refused(machine, argv: list[str]) -> None:
    out = machine.run("hostnamectl", *argv, nobody=True)
    assert out.returncode == 1
    # hostnamectl prints strerror(EACCES) for AccessDenied, not the text
    assert out.stderr.endswith(": Access denied\n"), out.stderr
    assert not (machine.root / "etc/hostname").exists()
    assert not (machine.root / "etc/machine-info").exists()
    assert machine.hostname() == START_HOSTNAME
    # reading stays open to everyone
    assert machine.run("hostnamectl", "hostname", nobody=True, check=True).stdout == f"{START_HOSTNAME}\n"


def test_access_denied_names_the_action(machine) -> None:
    # the real clients print strerror; dbus-send shows the reply as sent
    out = machine.run(
        "dbus-send", "--system", "--print-reply", "--dest=org.freedesktop.hostname1",
        "/org/freedesktop/hostname1", "org.freedesktop.hostname1.SetStaticHostname",
        "string:evil", "boolean:false", nobody=True,
    )  # fmt: skip
    assert out.returncode == 1
    assert (
        "Error org.freedesktop.DBus.Error.AccessDenied: "
        "Access denied: setting the static hostname needs root"
    ) in out.stderr, out.stderr


def _call(machine, member: str, sig: str = "", *args: str, nobody: bool = False):
    return machine.run("busctl", "--json=short", "--", "call", "org.freedesktop.hostname1",
                       "/org/freedesktop/hostname1", "org.freedesktop.hostname1", member,
                       *([sig, *args] if sig else []), nobody=nobody)  # fmt: skip


def test_describe(machine) -> None:
    (machine.root / "etc/hostname").write_text("described\n")
    (machine.root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    out = _call(machine, "Describe")
    assert out.returncode == 0, out.stderr
    data = json.loads(json.loads(out.stdout)["data"][0])
    assert data["StaticHostname"] == "described"
    assert data["Hostname"] == START_HOSTNAME
    assert data["OperatingSystemPrettyName"] == "Test OS 1"
    assert data["MachineID"] == "0123456789abcdef0123456789abcdef"
    assert len(data["BootID"]) == 32


def test_product_uuid_and_serial(machine) -> None:
    # This machine's firmware exposes no DMI: the errors say so; non-root is refused first.
    out = _call(machine, "GetProductUUID", "b", "false")
    if out.returncode == 0:
        assert len(json.loads(out.stdout)["data"][0]) == 16
    else:
        assert "Failed to read product UUID from firmware" in out.stderr
    out = _call(machine, "GetProductUUID", "b", "true", nobody=True)
    assert out.returncode == 1 and "Access denied" in out.stderr
    out = _call(machine, "GetHardwareSerial", nobody=True)
    assert out.returncode == 1 and "Access denied" in out.stderr


def test_static_hostname_is_what_init_sets_at_the_next_boot(machine) -> None:
    # dynamod-init reads /etc/hostname at boot (sysinit.set_hostname): the
    # file hostnamectl wrote is read back by it, in a fresh UTS namespace.
    machine.run("hostnamectl", "set-hostname", "--static", "after-reboot", check=True)
    script = (
        "import socket, sys; from dynamod.init.sysinit import set_hostname; "
        "set_hostname(sys.argv[1]); print(socket.gethostname())"
    )
    out = subprocess.run(
        ["unshare", "--uts", sys.executable, "-c", script, str(machine.root / "etc/hostname")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.splitlines()[-1] == "after-reboot"
