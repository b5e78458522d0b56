"""The few system calls PID 1 needs that ``os`` does not wrap (via ctypes)."""

from __future__ import annotations

import os

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_FORCE = 1
MNT_DETACH = 2

RB_AUTOBOOT = 0x01234567
RB_HALT_SYSTEM = 0xCDEF0123
RB_POWER_OFF = 0x4321FEDC
RB_DISABLE_CAD = 0
REBOOT_COMMANDS = {"reboot": RB_AUTOBOOT, "halt": RB_HALT_SYSTEM, "poweroff": RB_POWER_OFF}

PR_SET_CHILD_SUBREAPER = 36

_libc = None


def libc():
    # ctypes costs PID 1 memory it does not need in container mode.
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    import ctypes

    ret = libc().mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(ret, f"mount {source} on {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(libc().umount2(target.encode(), flags), f"umount {target}")


def reboot(command: int) -> None:
    import ctypes

    # c_int wraps the unsigned magic numbers the way the kernel expects.
    _check(libc().reboot(ctypes.c_int(command)), "reboot")


def set_subreaper() -> None:
    _check(libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
