"""Switching the cgroup2 mount option ``favordynmods`` for some trials.

dynamod-init mounts /sys/fs/cgroup with it (cheap task migrations), and
dynamod-isolation then places services by moving svmgr into their cgroups
for the fork. The machine the suite runs on mounted cgroup2 itself, maybe
without it; to show dynamod as it runs when it is PID 1, the spawn
measurement turns the option on around those trials (root only) and puts
the mount back as it was. It is a flag of the whole hierarchy: processes
outside the suite see cheaper migrations and slightly dearer forks while
it is on.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

from dynamod_isolation import cgroups

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 32, 1024, 2048, 1 << 21
MS_STRICTATIME = 1 << 24
FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
         "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
         "strictatime": MS_STRICTATIME}
GENERIC = {"rw", "seclabel", *FLAGS}


def cgroup2_mount() -> tuple[str, set[str]] | None:
    """The cgroup2 mount dynamod would use, and its options."""
    target = cgroups.preferred_mount(cgroups.cgroup2_mounts())
    return None if target is None else (target, cgroups.mount_options(target))


def _remount(target: str, opts: set[str]) -> None:
    flags = MS_REMOUNT
    for o in opts:
        flags |= FLAGS.get(o, 0)
    data = ",".join(o for o in opts if o not in GENERIC)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"cgroup2", target.encode(), b"cgroup2", flags, data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"remount {target} ({data or 'no options'}): {os.strerror(err)}")


def has_favordynmods() -> bool:
    m = cgroup2_mount()
    return m is not None and "favordynmods" in m[1]


@contextlib.contextmanager
def favordynmods() -> Iterator[None]:
    """cgroup2 with favordynmods for the ``with`` block, as it was after."""
    m = cgroup2_mount()
    if m is None:
        raise OSError("no cgroup2 mount")
    target, opts = m
    if "favordynmods" in opts:
        yield
        return
    _remount(target, opts | {"favordynmods"})
    try:
        yield
    finally:
        _remount(target, opts)
