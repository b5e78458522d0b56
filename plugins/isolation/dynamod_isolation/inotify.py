"""inotify on the manager's loop, for ``memory.events``.

cgroupfs signals a change of ``memory.events`` (an OOM kill, say) as a
file-modified event. ``poll()`` on the file itself would not do: kernfs
reports such files as always readable, which would spin the loop. The
stdlib has no inotify, so this is a few ctypes calls: one descriptor for
the whole plugin, one watch per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import struct
from collections.abc import Callable

IN_MODIFY = 0x00000002
IN_IGNORED = 0x00008000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


class Inotify:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.callbacks: dict[int, Callable[[], None]] = {}
        self.loop = loop
        if loop is not None:
            loop.add_reader(self.fd, self.dispatch)

    def watch(self, path: str, callback: Callable[[], None]) -> int:
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), IN_MODIFY)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
        self.callbacks[wd] = callback
        return wd

    def unwatch(self, wd: int) -> None:
        if self.callbacks.pop(wd, None) is not None:
            self.libc.inotify_rm_watch(self.fd, wd)  # fails harmlessly if the file is gone

    def dispatch(self) -> None:
        """Read every pending event and call each watch's callback once."""
        due: list[int] = []
        while True:
            try:
                data = os.read(self.fd, 4096)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size + length
                if mask & IN_IGNORED:  # the file (its cgroup) went away
                    self.callbacks.pop(wd, None)
                elif wd not in due:
                    due.append(wd)
        for wd in due:
            cb = self.callbacks.get(wd)
            if cb is not None:
                cb()

    def close(self) -> None:
        if self.fd < 0:
            return
        if self.loop is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
        self.callbacks.clear()
