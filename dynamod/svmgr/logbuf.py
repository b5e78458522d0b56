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

MAX_LINE = 48 * 1024
RING_LINES = 1000
RING_BYTES = 256 * 1024
READ_CHUNK = 65536


def split_long(line: bytes, limit: int = MAX_LINE) -> list[bytes]:
    """``line`` in pieces of at most ``limit`` bytes, cut before a UTF-8
    continuation byte where one is near, so that a character is not split."""
    pieces: list[bytes] = []
    while len(line) > limit:
        cut = limit
        while cut > limit - 3 and line[cut] & 0xC0 == 0x80:
            cut -= 1
        if line[cut] & 0xC0 == 0x80:
            cut = limit  # not UTF-8 anyway
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


class LogBuffer:
    def __init__(self, maxlen: int = RING_LINES, max_bytes: int = RING_BYTES) -> None:
        self.lines: deque[tuple[float, str]] = deque()
        self.maxlen, self.max_bytes = maxlen, max_bytes
        self.size = 0

    def append(self, text: str) -> None:
        self.lines.append((time.time(), text))
        self.size += sys.getsizeof(text)
        while len(self.lines) > self.maxlen or (self.size > self.max_bytes and len(self.lines) > 1):
            self.size -= sys.getsizeof(self.lines.popleft()[1])

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
                self.buf.append(piece.decode("utf-8", "replace").rstrip("\r"))

    def close(self) -> None:
        if self.fd < 0:
            return
        if self.partial:
            self.buf.append(self.partial.decode("utf-8", "replace"))
            self.partial = b""
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
