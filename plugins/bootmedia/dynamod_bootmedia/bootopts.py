"""The kernel command line parameters the boot media plugin reads.

Pure: :func:`parse` turns the map dynamod-init passes to the
``dynamod_mount_root`` hook (``{"root": "LABEL=x", "ro": "", ...}``) into a
:class:`BootOptions`. Unknown parameters are ignored; malformed values of
known ones raise :class:`BootOptionError` with the parameter named.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SQUASHFS = "/live/root.squashfs"
DEFAULT_FSTYPES = ("ext4",)
LIVE_MEDIA_FSTYPES = ("iso9660", "udf")
# How long to look for a device that is not there yet. The kernel waits
# forever on a bare `rootwait`; PID 1 must never hang, so a bare `rootwait`
# is bounded too (and `rootwait=SECONDS` says how long, as on Linux >= 6.5).
GRACE_SECONDS = 5.0
ROOTWAIT_SECONDS = 60.0
POLL_INTERVAL = 0.25


class BootOptionError(ValueError):
    """A known kernel command line parameter has a value we cannot use."""


@dataclass(frozen=True)
class BootOptions:
    root: str | None = None
    fstypes: tuple[str, ...] = DEFAULT_FSTYPES
    rootflags: str = ""
    read_only: bool = True
    wait: float = GRACE_SECONDS  # seconds to wait for the device to appear
    rootwait: bool = False
    delay: float = 0.0  # rootdelay=: sleep this long before looking
    live: bool = False
    media: str | None = None
    squashfs: str = DEFAULT_SQUASHFS
    overlay: bool = True
    emergency: bool = False
    modules: tuple[str, ...] = ()  # dynamod.modules=a,b: load these too

    @property
    def handled(self) -> bool:
        """True when this command line asks for a root this plugin mounts."""
        return self.live or bool(self.root)


def _seconds(name: str, value: str) -> float:
    try:
        secs = float(value)
    except ValueError:
        raise BootOptionError(f"{name}={value}: not a number of seconds") from None
    if secs < 0 or secs != secs or secs == float("inf"):
        raise BootOptionError(f"{name}={value}: must be a number of seconds >= 0")
    return secs


def _flag(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("", "1", "yes", "y", "on", "true"):
        return True
    if v in ("0", "no", "n", "off", "false"):
        return False
    raise BootOptionError(f"{name}={value}: expected 0 or 1")


def parse(cmdline: dict[str, str]) -> BootOptions:
    """Read the parameters this plugin knows; ignore everything else."""
    kw: dict[str, object] = {}
    root = cmdline.get("root")
    if root is not None:
        if not root:
            raise BootOptionError("root= is empty")
        kw["root"] = root
    if cmdline.get("rootfstype"):
        types = tuple(t for t in cmdline["rootfstype"].split(",") if t)
        if types:
            kw["fstypes"] = types
    if "rootflags" in cmdline:
        kw["rootflags"] = cmdline["rootflags"]
    # The kernel honours the last of ro/rw; a dict keeps one of each, so
    # "rw" wins when both appear (the usual intent of appending rw).
    kw["read_only"] = "rw" not in cmdline
    if "rootwait" in cmdline:
        kw["rootwait"] = True
        value = cmdline["rootwait"]
        kw["wait"] = _seconds("rootwait", value) if value else ROOTWAIT_SECONDS
    if "rootdelay" in cmdline:
        kw["delay"] = _seconds("rootdelay", cmdline["rootdelay"])
    if "dynamod.live" in cmdline:
        kw["live"] = _flag("dynamod.live", cmdline["dynamod.live"])
    if cmdline.get("dynamod.media"):
        kw["media"] = cmdline["dynamod.media"]
    if "dynamod.squashfs" in cmdline:
        path = cmdline["dynamod.squashfs"]
        if not path or ".." in path.split("/"):
            raise BootOptionError(f"dynamod.squashfs={path}: expected a path on the live media")
        kw["squashfs"] = "/" + path.lstrip("/")
    if "dynamod.overlay" in cmdline:
        kw["overlay"] = _flag("dynamod.overlay", cmdline["dynamod.overlay"])
    if cmdline.get("dynamod.modules"):
        kw["modules"] = tuple(m for m in cmdline["dynamod.modules"].split(",") if m)
    if "dynamod.emergency" in cmdline:
        kw["emergency"] = cmdline["dynamod.emergency"] == "1"
    return BootOptions(**kw)  # type: ignore[arg-type]
