"""Per-service output capture: the last lines each service printed.

Each service's stdout and stderr share one pipe; the manager reads it without
blocking and keeps a bounded ring of ``(time, line)``. It answers
``dynamodctl logs`` when dynamod-logd is not running.

Everything here is bounded whatever a service writes (issue 13): a line
longer than :data:`MAX_LINE` bytes is cut into pieces of that size (the
bound dynamod-logd uses too), and the ring holds at most
:data:`RING_LINES` lines and :data:`RING_BYTES` bytes of text per service.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import deque
from collections.abc import Callable

from dynamod.logd.record import MAX_LINE, split_long

RING_LINES = 1000
RING_BYTES = 256 * 1024
READ_CHUNK = 65536


class LogBuffer:
    def __init__(self, maxlen: int = RING_LINES, max_bytes: int = RING_BYTES) -> None:
        self.lines: deque[tuple[float, str, str]] = deque()
        self.maxlen, self.max_bytes = maxlen, max_bytes
        self.size = 0

    def append(self, text: str, stream: str = "stdout") -> None:
        self.lines.append((time.time(), text, stream))
        self.size += sys.getsizeof(text)
        while len(self.lines) > self.maxlen or (self.size > self.max_bytes and len(self.lines) > 1):
            self.size -= sys.getsizeof(self.lines.popleft()[1])

    def tail(self, n: int | None = None) -> list[tuple[float, str]]:
        return [(t, x) for t, x, _s in self.entries(n)]

    def entries(self, n: int | None = None) -> list[tuple[float, str, str]]:
        """The newest ``n`` lines (all when None) as ``(time, text, stream)``."""
        if n is None or n >= len(self.lines):
            return list(self.lines)
        return list(self.lines)[-n:] if n > 0 else []


class PipeReader:
    """Feeds lines from a non-blocking pipe into a LogBuffer until EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, buf: LogBuffer,
                 on_eof: Callable[[], object] | None = None, stream: str = "stdout",
                 on_line: Callable[[bytes], object] | None = None) -> None:
        self.loop, self.fd, self.buf, self.on_eof, self.stream = loop, fd, buf, on_eof, stream
        self.on_line = on_line  # sees every line (dynamod.svmgr.logdlink's early buffer)
        self.paused = False
        self.partial = b""
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        if self.partial:
            data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        # A writer that never prints a newline must not grow us: what is
        # beyond one line's bound goes out now, in pieces of that bound.
        if len(self.partial) > MAX_LINE:
            *full, self.partial = split_long(self.partial)
            lines.extend(full)
        for line in lines:
            for piece in split_long(line) if len(line) > MAX_LINE else (line,):
                self.buf.append(piece.decode("utf-8", "replace").rstrip("\r"), self.stream)
                if self.on_line is not None:
                    self.on_line(piece)

    def pause(self, paused: bool) -> None:
        """Stop (or go on) reading: what is written meanwhile waits in the pipe."""
        if self.fd < 0 or paused == self.paused:
            return
        self.paused = paused
        if paused:
            self.loop.remove_reader(self.fd)
        else:
            self.loop.add_reader(self.fd, self._readable)

    def detach(self) -> None:
        """Stop reading and keep the pipe open (dynamod-logd reads it now)."""
        if self.fd < 0:
            return
        if self.partial:
            self.buf.append(self.partial.decode("utf-8", "replace"), self.stream)
            if self.on_line is not None:
                self.on_line(self.partial)
            self.partial = b""
        if not self.paused:
            self.loop.remove_reader(self.fd)
        self.fd = -1

    def close(self) -> None:
        fd = self.fd
        if fd < 0:
            return
        self.detach()
        os.close(fd)
        if self.on_eof is not None:
            self.on_eof()
