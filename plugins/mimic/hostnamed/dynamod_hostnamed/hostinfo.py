"""hostname1's data: /etc/hostname, /etc/machine-info, os-release, DMI and
the kernel's names, with systemd's validation rules for every setter.

Rules (hostname(5), machine-info(5), hostnamectl(1), org.freedesktop.hostname1(5)):

* a static or transient hostname is one DNS label or several joined by
  single dots, 7-bit ASCII letters, digits, ``-`` and ``_``, at most 64
  characters, no leading or trailing dot;
* the pretty hostname and the location are free-form UTF-8 without control
  characters;
* the chassis is one of :data:`CHASSIS`;
* the deployment is a single word without control characters;
* the icon name is a valid file name (XDG icon names are).
"""

from __future__ import annotations

import os
import re
import socket
import unicodedata
from dataclasses import dataclass

from dynamod_hostnamed import envfile
from dynamod_hostnamed.errors import invalid
from dynamod_hostnamed.fsroot import Root

HOST_NAME_MAX = 64
CHASSIS = (
    "desktop", "laptop", "convertible", "server", "tablet", "handset",
    "watch", "embedded", "vm", "container",
)  # fmt: skip
FALLBACK_HOSTNAME = "localhost"
MACHINE_INFO = "/etc/machine-info"
MACHINE_INFO_KEYS = ("PRETTY_HOSTNAME", "ICON_NAME", "CHASSIS", "DEPLOYMENT", "LOCATION")
_LABEL_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_DMI = "/sys/class/dmi/id"

# Chassis types of the SMBIOS "chassis type" byte (DMI chassis_type), per the
# DMTF SMBIOS specification's table of enclosure types.
_DMI_CHASSIS = {
    0x03: "desktop", 0x04: "desktop", 0x06: "desktop", 0x07: "desktop",
    0x0D: "desktop", 0x23: "desktop", 0x24: "desktop",
    0x08: "laptop", 0x09: "laptop", 0x0A: "laptop", 0x0E: "laptop",
    0x1F: "convertible", 0x20: "convertible",
    0x0B: "handset",
    0x11: "server", 0x1C: "server", 0x1D: "server", 0x17: "server",
    0x1E: "tablet",
    0x21: "embedded", 0x22: "embedded",
}  # fmt: skip
_CHASSIS_ICON = {
    "desktop": "computer-desktop", "laptop": "computer-laptop",
    "convertible": "computer-convertible", "server": "computer-server",
    "tablet": "computer-tablet", "handset": "phone", "watch": "watch",
    "embedded": "computer-embedded", "vm": "computer-vm",
    "container": "computer-container",
}  # fmt: skip


def hostname_is_valid(name: str) -> bool:
    """Is ``name`` a hostname systemd accepts (see the module docstring)?"""
    if not name or len(name) > HOST_NAME_MAX or not name.isascii():
        return False
    return all(label and _LABEL_CHARS.fullmatch(label) for label in name.split("."))


def has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def check_hostname(name: str, what: str) -> None:
    """Raise InvalidArgs unless ``name`` is empty (unset) or valid."""
    if name and not hostname_is_valid(name):
        raise invalid(
            f"Invalid {what} hostname '{name}': a hostname is at most {HOST_NAME_MAX} "
            "characters of 7-bit ASCII letters, digits, '-' and '_', in labels "
            "separated by single dots"
        )


def check_pretty(name: str) -> None:
    if has_control(name):
        raise invalid(f"Invalid pretty hostname {name!r}: control characters are not allowed")
    if len(name.encode()) > 255:
        raise invalid("Invalid pretty hostname: longer than 255 bytes")


def check_icon(name: str) -> None:
    if not name:
        return
    if (
        name in (".", "..")
        or "/" in name
        or has_control(name)
        or len(name.encode()) > 255
    ):
        raise invalid(f"Invalid icon name {name!r}: it must be a valid file name")


def check_chassis(name: str) -> None:
    if name and name not in CHASSIS:
        raise invalid(f"Invalid chassis '{name}': one of {', '.join(CHASSIS)}")


def check_deployment(name: str) -> None:
    if name and (has_control(name) or any(c.isspace() for c in name)):
        raise invalid(
            f"Invalid deployment {name!r}: a single word without spaces or control characters"
        )


def check_location(name: str) -> None:
    if has_control(name):
        raise invalid(f"Invalid location {name!r}: control characters are not allowed")


@dataclass
class OsRelease:
    pretty_name: str = ""
    cpe_name: str = ""
    home_url: str = ""
    default_hostname: str = ""


class HostInfo:
    """Reads and writes hostname1's files under a :class:`Root`."""

    def __init__(self, root: Root) -> None:
        self.root = root
        # SetHostname with a static name set is remembered, not applied (the
        # static name has priority); SetStaticHostname("") then falls back to it.
        self.transient: str | None = None

    # --- reading -------------------------------------------------------------

    def static_hostname(self) -> str:
        """The first non-comment line of /etc/hostname, "" when unset or invalid."""
        text = self.root.read("/etc/hostname") or ""
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                return line if hostname_is_valid(line) else ""
        return ""

    def machine_info(self) -> dict[str, str]:
        return envfile.parse(self.root.read(MACHINE_INFO))

    def os_release(self) -> OsRelease:
        text = self.root.read("/etc/os-release")
        if text is None:
            text = self.root.read("/usr/lib/os-release")
        data = envfile.parse(text)
        return OsRelease(
            pretty_name=data.get("PRETTY_NAME", ""),
            cpe_name=data.get("CPE_NAME", ""),
            home_url=data.get("HOME_URL", ""),
            default_hostname=data.get("DEFAULT_HOSTNAME", ""),
        )

    def default_hostname(self) -> str:
        name = self.os_release().default_hostname
        return name if hostname_is_valid(name) else FALLBACK_HOSTNAME

    @staticmethod
    def kernel_hostname() -> str:
        return socket.gethostname()

    def hostname_source(self) -> str:
        kernel = self.kernel_hostname()
        static = self.static_hostname()
        if static and kernel == static:
            return "static"
        if self.transient is None and kernel == self.default_hostname():
            return "default"
        return "transient"

    def chassis(self) -> str:
        """CHASSIS= of machine-info, else what DMI says, else "vm"/"container"
        when we can tell, else ""."""
        configured = self.machine_info().get("CHASSIS", "")
        if configured in CHASSIS:
            return configured
        return self.detect_chassis()

    def detect_chassis(self) -> str:
        if self.root.exists("/run/.containerenv") or self.root.exists("/.dockerenv"):
            return "container"
        if _under_hypervisor():
            return "vm"
        raw = self.dmi("chassis_type")
        try:
            return _DMI_CHASSIS.get(int(raw, 0), "")
        except ValueError:
            return ""

    def icon_name(self) -> str:
        configured = self.machine_info().get("ICON_NAME", "")
        if configured:
            return configured
        return _CHASSIS_ICON.get(self.chassis(), "")

    def dmi(self, name: str) -> str:
        """A DMI attribute from the real /sys (hardware is not under --root)."""
        try:
            with open(os.path.join(_DMI, name), encoding="utf-8", errors="replace") as f:
                return f.read().strip()
        except OSError:
            return ""

    def hardware_vendor(self) -> str:
        return self.machine_info().get("HARDWARE_VENDOR") or self.dmi("sys_vendor")

    def hardware_model(self) -> str:
        return self.machine_info().get("HARDWARE_MODEL") or self.dmi("product_name")

    def firmware_version(self) -> str:
        return self.dmi("bios_version")

    def machine_id(self) -> bytes:
        """/etc/machine-id as 16 bytes, b"" when missing or malformed."""
        return _hex128((self.root.read("/etc/machine-id") or "").strip())

    @staticmethod
    def boot_id() -> bytes:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                return _hex128(f.read().strip().replace("-", ""))
        except OSError:
            return b""

    @staticmethod
    def product_uuid() -> bytes:
        """The DMI product UUID as 16 bytes, b"" when the firmware has none."""
        try:
            with open(os.path.join(_DMI, "product_uuid"), encoding="ascii") as f:
                return _hex128(f.read().strip().replace("-", ""))
        except (OSError, UnicodeDecodeError):
            return b""

    # --- writing -------------------------------------------------------------

    def set_static_hostname(self, name: str) -> None:
        check_hostname(name, "static")
        if name:
            self.root.write("/etc/hostname", name + "\n")
        else:
            self.root.remove("/etc/hostname")

    def set_machine_info(self, key: str, value: str) -> None:
        """Set (or, with "", remove) one key of /etc/machine-info; the other
        lines stay. A file left with nothing in it is removed."""
        text = envfile.update(self.root.read(MACHINE_INFO), {key: value}, list(MACHINE_INFO_KEYS))
        if text:
            self.root.write(MACHINE_INFO, text)
        else:
            self.root.remove(MACHINE_INFO)

    def effective_hostname(self) -> str:
        """What the kernel hostname should be: static, else transient, else default."""
        return self.static_hostname() or self.transient or self.default_hostname()


def _under_hypervisor() -> bool:
    """The CPU's ``hypervisor`` flag: set by every hypervisor that exposes CPUID."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "hypervisor" in line.split()
    except OSError:
        pass
    return False


def _hex128(text: str) -> bytes:
    if len(text) != 32:
        return b""
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""
