"""timedate1's data: the time zone (/etc/localtime, /etc/timezone), the RTC
mode (/etc/adjtime) and the system clock.

A time zone is valid when its name is a relative path of ASCII letters,
digits and ``/ _ + - .`` without empty, ``.`` or ``..`` components, and
``/usr/share/zoneinfo/NAME`` is a regular TZif file. ListTimezones lists the
zones of zone1970.tab (or zone.tab) plus UTC, sorted, as systemd does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import time

from dynamod_hostnamed.errors import AUTOMATIC_TIME_SYNC, FAILED, BusError, invalid
from dynamod_hostnamed.fsroot import Root

ZONEINFO = "/usr/share/zoneinfo"
_TZ_CHARS = re.compile(r"[A-Za-z0-9/_+.-]+")


def timezone_name_ok(name: str) -> bool:
    if not name or len(name) > 255 or not _TZ_CHARS.fullmatch(name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


class TimeDate:
    def __init__(self, root: Root) -> None:
        self.root = root

    # --- time zone -----------------------------------------------------------

    def timezone_valid(self, name: str) -> bool:
        if not timezone_name_ok(name):
            return False
        path = self.root.path(f"{ZONEINFO}/{name}")
        try:
            if not path.is_file():
                return False
            with open(path, "rb") as f:
                return f.read(4) == b"TZif"
        except OSError:
            return False

    def timezone(self) -> str:
        """The zone /etc/localtime links to; /etc/timezone when it is a copy;
        "UTC" when there is no /etc/localtime at all."""
        link = self.root.path("/etc/localtime")
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            return "UTC"
        except OSError:
            target = None
        if target is not None:
            marker = "zoneinfo/"
            at = target.find(marker)
            if at >= 0:
                name = target[at + len(marker) :]
                return name if timezone_name_ok(name) else ""
            return ""
        saved = (self.root.read("/etc/timezone") or "").strip()
        return saved if self.timezone_valid(saved) else ""

    def set_timezone(self, name: str) -> None:
        if not self.timezone_valid(name):
            raise invalid(f"Invalid or not installed time zone '{name}'")
        # Relative, so that the link also resolves inside --root and chroots.
        self.root.symlink("/etc/localtime", f"..{ZONEINFO}/{name}")
        if self.root.exists("/etc/timezone") or self.root.is_debian():
            self.root.write("/etc/timezone", name + "\n")

    def list_timezones(self) -> list[str]:
        names: set[str] = {"UTC"}
        for table in ("zone1970.tab", "zone.tab"):
            text = self.root.read(f"{ZONEINFO}/{table}")
            if text is None:
                continue
            for line in text.splitlines():
                if line.startswith("#"):
                    continue
                fields = line.split("\t")
                if len(fields) >= 3 and timezone_name_ok(fields[2]):
                    names.add(fields[2])
            break
        return sorted(names)

    # --- RTC mode ------------------------------------------------------------

    def local_rtc(self) -> bool:
        """Line 3 of /etc/adjtime (hwclock(8)) is LOCAL."""
        lines = (self.root.read("/etc/adjtime") or "").splitlines()
        return len(lines) >= 3 and lines[2].strip() == "LOCAL"

    def set_local_rtc(self, local: bool) -> None:
        text = self.root.read("/etc/adjtime")
        if text is None:
            if not local:
                return  # no file means UTC already
            lines = ["0.0 0 0", "0"]
        else:
            lines = text.splitlines()[:2]
            lines += ["0.0 0 0", "0"][len(lines) :]
        lines.append("LOCAL" if local else "UTC")
        self.root.write("/etc/adjtime", "\n".join(lines) + "\n")


# --- the system clock ---------------------------------------------------------


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> (x86-64 and every 64-bit Linux ABI).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


_ADJ_SETOFFSET = 0x0100
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _adjtimex(tx: _Timex) -> int:
    rc = _libc.adjtimex(ctypes.byref(tx))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def ntp_synchronized() -> bool:
    """The kernel says the clock is synchronized (adjtimex(2), read only)."""
    tx = _Timex()
    try:
        state = _adjtimex(tx)
    except OSError:
        return False
    return state != _TIME_ERROR and not tx.status & _STA_UNSYNC


def now_usec() -> int:
    return time.time_ns() // 1000


USEC_MAX = 2**63 - 1


def set_time(usec: int, relative: bool, ntp_active: bool) -> None:
    """SetTime: step the clock to ``usec`` (µs since the epoch) or by
    ``usec``. A relative step goes through adjtimex(ADJ_SETOFFSET), which
    adds the offset inside the kernel: nothing is lost between reading and
    setting, and an offset of 0 leaves the clock exactly as it was."""
    if ntp_active:
        raise BusError(AUTOMATIC_TIME_SYNC, "Automatic time synchronization is enabled")
    if relative:
        target = now_usec() + usec
        if target <= 0 or target > USEC_MAX:
            raise invalid("Time value overflow")
        tx = _Timex()
        tx.modes = _ADJ_SETOFFSET
        # A negative offset is a negative seconds part plus 0 <= usec < 1e6.
        tx.time.tv_sec, tx.time.tv_usec = divmod(usec, 1_000_000)
        try:
            _adjtimex(tx)
        except OSError as exc:
            raise BusError(FAILED, f"Failed to set system clock: {exc.strerror}") from exc
        return
    if usec <= 0:
        raise invalid("Invalid absolute time")
    try:
        time.clock_settime_ns(time.CLOCK_REALTIME, usec * 1000)
    except OSError as exc:
        raise BusError(FAILED, f"Failed to set system clock: {exc.strerror}") from exc
