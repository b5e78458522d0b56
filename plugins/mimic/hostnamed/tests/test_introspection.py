"""Exact member names and signatures, as org.freedesktop.hostname1(5),
timedate1(5) and locale1(5) list them, seen through busctl introspect."""

from __future__ import annotations

import pytest

# (member, kind, signature): method in-signatures, property types, per the man pages
HOSTNAME1 = {
    ("SetHostname", "method", "sb"), ("SetStaticHostname", "method", "sb"),
    ("SetPrettyHostname", "method", "sb"), ("SetIconName", "method", "sb"),
    ("SetChassis", "method", "sb"), ("SetDeployment", "method", "sb"),
    ("SetLocation", "method", "sb"), ("GetProductUUID", "method", "b"),
    ("GetHardwareSerial", "method", "-"), ("Describe", "method", "-"),
    *((p, "property", "s") for p in (
        "Hostname", "StaticHostname", "PrettyHostname", "DefaultHostname", "HostnameSource",
        "IconName", "Chassis", "Deployment", "Location", "KernelName", "KernelRelease",
        "KernelVersion", "OperatingSystemPrettyName", "OperatingSystemCPEName", "HomeURL",
        "HardwareVendor", "HardwareModel", "FirmwareVersion")),
    ("MachineID", "property", "ay"), ("BootID", "property", "ay"),
}  # fmt: skip
TIMEDATE1 = {
    ("SetTime", "method", "xbb"), ("SetTimezone", "method", "sb"), ("SetLocalRTC", "method", "bbb"),
    ("SetNTP", "method", "bb"), ("ListTimezones", "method", "-"),
    ("Timezone", "property", "s"), ("LocalRTC", "property", "b"), ("CanNTP", "property", "b"),
    ("NTP", "property", "b"), ("NTPSynchronized", "property", "b"), ("TimeUSec", "property", "t"),
    ("RTCTimeUSec", "property", "t"),
}  # fmt: skip
LOCALE1 = {
    ("SetLocale", "method", "asb"), ("SetVConsoleKeyboard", "method", "ssbb"),
    ("SetX11Keyboard", "method", "ssssbb"), ("Locale", "property", "as"),
    *((p, "property", "s") for p in ("X11Layout", "X11Model", "X11Variant", "X11Options",
                                     "VConsoleKeymap", "VConsoleKeymapToggle")),
}  # fmt: skip
OUT_SIGNATURES = {"GetProductUUID": "ay", "GetHardwareSerial": "s", "Describe": "s", "ListTimezones": "as"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [("hostname1", HOSTNAME1), ("timedate1", TIMEDATE1), ("locale1", LOCALE1)],
)
def test_members_and_signatures(machine, name: str, expected: set) -> None:
    out = machine.run("busctl", "introspect", "--no-pager", f"org.freedesktop.{name}",
                      f"/org/freedesktop/{name}", f"org.freedesktop.{name}", check=True).stdout  # fmt: skip
    got = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0].startswith("."):
            member, kind, sig, result = fields[0][1:], fields[1], fields[2], fields[3]
            got.add((member, kind, sig))
            if kind == "method":
                assert result == OUT_SIGNATURES.get(member, "-"), line
    assert got == expected
