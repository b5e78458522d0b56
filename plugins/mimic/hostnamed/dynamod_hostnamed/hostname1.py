"""org.freedesktop.hostname1 on /org/freedesktop/hostname1 (org.freedesktop.hostname1(5))."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Awaitable, Callable

from dynamod_mimic_common import CallContext, DBusError, Interface, Method, ObjectServer, Prop

from dynamod_hostnamed import hostinfo
from dynamod_hostnamed.bushelp import setter
from dynamod_hostnamed.errors import FAILED, BusError
from dynamod_hostnamed.hostinfo import HostInfo

PATH = "/org/freedesktop/hostname1"
NAME = "org.freedesktop.hostname1"
NO_PRODUCT_UUID = "org.freedesktop.hostname1.NoProductUUID"
NO_HARDWARE_SERIAL = "org.freedesktop.hostname1.NoHardwareSerial"


class Hostname:
    def __init__(self, info: HostInfo, server: ObjectServer) -> None:
        self.info = info
        self.server = server
        self.uname = os.uname()

    def changed(self, *names: str) -> None:
        self.server.properties_changed(PATH, HOSTNAME1, self, names)

    def apply_kernel_hostname(self) -> None:
        """Make the kernel hostname what the configuration says it should be."""
        want = self.info.effective_hostname()
        if socket.gethostname() == want:
            return
        try:
            socket.sethostname(want)
        except OSError as exc:
            raise BusError(FAILED, f"Failed to set hostname '{want}': {exc.strerror}") from exc


@setter("setting the transient hostname")
def set_hostname(h: Hostname, ctx: CallContext, name: str, interactive: bool) -> None:
    hostinfo.check_hostname(name, "transient")
    if (name or None) == h.info.transient and socket.gethostname() == h.info.effective_hostname():
        return
    h.info.transient = name or None
    # The static hostname has priority: with one set, the transient name is
    # only remembered (hostnamectl prints a hint about that itself).
    h.apply_kernel_hostname()
    h.changed("Hostname", "HostnameSource")


@setter("setting the static hostname")
def set_static_hostname(h: Hostname, ctx: CallContext, name: str, interactive: bool) -> None:
    if name == h.info.static_hostname():
        return
    h.info.set_static_hostname(name)
    h.apply_kernel_hostname()
    h.changed("StaticHostname", "Hostname", "HostnameSource")


def _machine_info_setter(
    key: str, prop: str, check: Callable[[str], None], action: str
) -> Callable[..., Awaitable[None]]:
    @setter(action)
    def method(h: Hostname, ctx: CallContext, value: str, interactive: bool) -> None:
        check(value)
        if h.info.machine_info().get(key, "") == value:
            return
        h.info.set_machine_info(key, value)
        extra = ("IconName",) if prop == "Chassis" else ()
        h.changed(prop, *extra)

    method.__name__ = f"set_{prop.lower()}"
    return method


async def get_product_uuid(h: Hostname, ctx: CallContext, interactive: bool) -> list[int]:
    await ctx.require_root("reading the product UUID")
    uuid = HostInfo.product_uuid()
    if not uuid:
        raise DBusError(NO_PRODUCT_UUID, "Failed to read product UUID from firmware")
    return list(uuid)


async def get_hardware_serial(h: Hostname, ctx: CallContext) -> str:
    await ctx.require_root("reading the hardware serial")
    serial = h.info.dmi("product_serial") or h.info.dmi("board_serial")
    if not serial:
        raise DBusError(NO_HARDWARE_SERIAL, "Failed to read hardware serial from firmware")
    return serial


def describe(h: Hostname, ctx: CallContext) -> str:
    values = {}
    for prop in HOSTNAME1.props.values():
        value = prop.get(h)
        # ay values (MachineID, BootID) as the hex strings people know them by
        values[prop.name] = bytes(value).hex() if prop.signature == "ay" else value
    return json.dumps(values)


# The setters of /etc/machine-info: D-Bus member, key, property, check, what, argument name.
_MACHINE_INFO_SETTERS = (
    ("SetPrettyHostname", "PRETTY_HOSTNAME", "PrettyHostname", hostinfo.check_pretty,
     "pretty hostname", "hostname"),
    ("SetIconName", "ICON_NAME", "IconName", hostinfo.check_icon, "icon name", "icon"),
    ("SetChassis", "CHASSIS", "Chassis", hostinfo.check_chassis, "chassis", "chassis"),
    ("SetDeployment", "DEPLOYMENT", "Deployment", hostinfo.check_deployment, "deployment",
     "deployment"),
    ("SetLocation", "LOCATION", "Location", hostinfo.check_location, "location", "location"),
)  # fmt: skip

HOSTNAME1 = Interface(
    NAME,
    methods=[
        Method("SetHostname", "sb", "", set_hostname, ("hostname", "interactive")),
        Method("SetStaticHostname", "sb", "", set_static_hostname, ("hostname", "interactive")),
        *(
            Method(member, "sb", "", _machine_info_setter(key, prop, check, f"setting the {what}"),
                   (arg, "interactive"))
            for member, key, prop, check, what, arg in _MACHINE_INFO_SETTERS
        ),
        Method("GetProductUUID", "b", "ay", get_product_uuid, ("interactive",), ("uuid",)),
        Method("GetHardwareSerial", "", "s", get_hardware_serial, (), ("serial",)),
        Method("Describe", "", "s", describe, (), ("json",)),
    ],
    props=[
        Prop("Hostname", "s", lambda h: socket.gethostname()),
        Prop("StaticHostname", "s", lambda h: h.info.static_hostname()),
        Prop("PrettyHostname", "s", lambda h: h.info.machine_info().get("PRETTY_HOSTNAME", "")),
        Prop("DefaultHostname", "s", lambda h: h.info.default_hostname(), emits="const"),
        Prop("HostnameSource", "s", lambda h: h.info.hostname_source()),
        Prop("IconName", "s", lambda h: h.info.icon_name()),
        Prop("Chassis", "s", lambda h: h.info.chassis()),
        Prop("Deployment", "s", lambda h: h.info.machine_info().get("DEPLOYMENT", "")),
        Prop("Location", "s", lambda h: h.info.machine_info().get("LOCATION", "")),
        Prop("KernelName", "s", lambda h: h.uname.sysname, emits="const"),
        Prop("KernelRelease", "s", lambda h: h.uname.release, emits="const"),
        Prop("KernelVersion", "s", lambda h: h.uname.version, emits="const"),
        Prop("OperatingSystemPrettyName", "s", lambda h: h.info.os_release().pretty_name,
             emits="const"),
        Prop("OperatingSystemCPEName", "s", lambda h: h.info.os_release().cpe_name, emits="const"),
        Prop("HomeURL", "s", lambda h: h.info.os_release().home_url, emits="const"),
        Prop("HardwareVendor", "s", lambda h: h.info.hardware_vendor(), emits="const"),
        Prop("HardwareModel", "s", lambda h: h.info.hardware_model(), emits="const"),
        Prop("FirmwareVersion", "s", lambda h: h.info.firmware_version(), emits="const"),
        # Newer systemd (254) serves these as ay; 252's hostnamectl reads the
        # files itself and ignores them.
        Prop("MachineID", "ay", lambda h: list(h.info.machine_id()), emits="const"),
        Prop("BootID", "ay", lambda h: list(HostInfo.boot_id()), emits="const"),
    ],
)
