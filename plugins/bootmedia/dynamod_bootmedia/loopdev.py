"""Attaching a file to a loop device (what ``losetup -f -r FILE`` does),
with the loop ioctls: no losetup binary needed in the initramfs."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time

LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_NAME_SIZE = 64


def _info64(path: str, flags: int) -> bytes:
    """struct loop_info64 (232 bytes) with the flags and the file name."""
    name = os.fsencode(path)[-(LO_NAME_SIZE - 1):]
    return struct.pack("<5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, flags, name, b"", b"", 0, 0)


def _config(fd: int, path: str, flags: int) -> bytes:
    """struct loop_config: fd, block_size, loop_info64, 8 reserved u64."""
    return struct.pack("<II", fd, 0) + _info64(path, flags) + bytes(64)


class LoopDevice:
    """An attached loop device, held open: with autoclear, the kernel
    detaches it when the last user goes away, so mount it (or open it)
    before :meth:`close`."""

    def __init__(self, node: str, fd: int) -> None:
        self.node = node
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> LoopDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(path: str, *, read_only: bool = True, dev: str = "/dev", retries: int = 20,
           autoclear: bool = True) -> LoopDevice:
    """Attach ``path`` to a free loop device (/dev/loopN). With
    ``autoclear`` the device detaches itself once it is closed and no mount
    uses it any more."""
    flags = (LO_FLAGS_AUTOCLEAR if autoclear else 0) | (LO_FLAGS_READ_ONLY if read_only else 0)
    backing = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
    try:
        ctl = os.open(os.path.join(dev, "loop-control"), os.O_RDWR | os.O_CLOEXEC)
        try:
            last: OSError | None = None
            for _ in range(retries):
                number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                node = os.path.join(dev, f"loop{number}")
                for _ in range(40):  # devtmpfs makes the node; give it a moment
                    if os.path.exists(node):
                        break
                    time.sleep(0.025)
                try:
                    lfd = os.open(node, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
                except OSError as exc:
                    last = exc
                    continue
                try:
                    _configure(lfd, backing, path, flags)
                    return LoopDevice(node, lfd)
                except OSError as exc:
                    os.close(lfd)
                    if exc.errno != errno.EBUSY:  # EBUSY: someone took it first
                        raise
                    last = exc
            raise last or OSError(errno.EBUSY, "no free loop device")
        finally:
            os.close(ctl)
    finally:
        os.close(backing)


def _configure(lfd: int, backing: int, path: str, flags: int) -> None:
    try:
        fcntl.ioctl(lfd, LOOP_CONFIGURE, _config(backing, path, flags))
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTTY):  # kernels before 5.8
            raise
    fcntl.ioctl(lfd, LOOP_SET_FD, backing)
    try:
        fcntl.ioctl(lfd, LOOP_SET_STATUS64, _info64(path, flags))
    except OSError:
        fcntl.ioctl(lfd, LOOP_CLR_FD, 0)
        raise


def detach(node: str) -> None:
    fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD, 0)
    finally:
        os.close(fd)
