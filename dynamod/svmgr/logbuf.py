"""Per-service output capture: the last lines each service printed.

Each service's stdout and stderr share one pipe; the manager reads it without
blocking and keeps a bounded ring of ``(time, line)``. dynamod-logd takes over
persistent storage in its own issue; this ring answers ``dynamodctl logs``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque

MAX_LINE = 4096


class LogBuffer:
    def __init__(self, maxlen: int = 1000) -> None:
        self.lines: deque[tuple[float, str]] = deque(maxlen=maxlen)

    def append(self, text: str) -> None:
        self.lines.append((time.time(), text))

    def tail(self, n: int | None = None) -> list[tuple[float, str]]:
        if n is None or n >= len(self.lines):
            return list(self.lines)
        return list(self.lines)[-n:] if n > 0 else []


class PipeReader:
    """Feeds lines from a non-blocking pipe into a LogBuffer until EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, buf: LogBuffer) -> None:
        self.loop, self.fd, self.buf = loop, fd, buf
        self.partial = b""
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        # A writer that never prints a newline must not grow us unbounded.
        if len(self.partial) > MAX_LINE:
            lines.append(self.partial)
            self.partial = b""
        for line in lines:
            self.buf.append(line.decode("utf-8", "replace").rstrip("\r"))

    def close(self) -> None:
        if self.fd < 0:
            return
        if self.partial:
            self.buf.append(self.partial.decode("utf-8", "replace"))
            self.partial = b""
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
