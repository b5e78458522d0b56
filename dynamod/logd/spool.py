"""A service's output pipe, moved into a spool file and cut into records.

Reading a pipe takes the bytes out of it: a logd killed between a ``read``
and the write of the record would lose them. So the pipe is never read:
``splice(2)`` moves its bytes straight into a spool file (the kernel does
that or not; a killed logd leaves every moved byte in the file), and the
records are parsed from the spool. Each record carries its *cursor*, the
spool offset just after its bytes; a restarted logd finds the last cursor
of each stream in the store and parses the spool on from there. Bytes are
moved exactly once and parsed into records exactly once.

The spool of stream ``ID`` is the directory ``SPOOL/ID``: ``meta`` (the
service, pid and stream, JSON) and segment files named after their first
offset (16 hex digits). A new segment is begun once the current one holds
1 MiB that is all parsed; older segments are then deleted. At EOF (every
writer closed the pipe) the last partial line is flushed and the spool is
deleted; so is a spool that is all parsed when logd stops (the pipe
itself stays with svmgr, and the next logd's spool of it begins at the
offset where this one ended).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable

from dynamod.logd.record import ERR, INFO, MAX_LINE, Record, parse_priority, split_long

SEGMENT = 1024 * 1024
SPLICE_MAX = 1024 * 1024


class Spool:
    def __init__(self, root: str, sid: str, service: str, pid: int | None, stream: str,
                 boot: str, emit: Callable[[list[Record]], None]) -> None:
        self.dir = os.path.join(root, sid)
        self.id, self.service, self.pid, self.stream = sid, service, pid, stream
        self.boot, self.emit = boot, emit
        self.default_priority = ERR if stream == "stderr" else INFO
        self.segments: list[int] = []  # first offsets
        self.wfd = -1
        self.rfd = -1  # reads the newest segment back
        self.end = 0  # offset after the last byte moved in
        self.parsed = 0  # offset after the last byte given to a record
        self.pending = b""  # a partial line, starting at ``parsed``
        self._now = (0, 0)

    # ---------------------------------------------------------------- setup
    def create(self, base: int = 0) -> None:
        """A new spool; ``base`` continues the offsets of an earlier spool of
        the same stream, so that cursors stay monotonic."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        meta = os.path.join(self.dir, "meta")
        if not os.path.exists(meta):
            tmp = meta + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"service": self.service, "pid": self.pid, "stream": self.stream}, f)
            os.rename(tmp, meta)
        self._load_segments()
        if not self.segments:
            self._new_segment(base)
            self.end = self.parsed = base

    @classmethod
    def recover(cls, root: str, sid: str, boot: str, emit: Callable[[list[Record]], None]) -> Spool | None:
        """The spool a previous logd left, or None when it has no valid meta."""
        try:
            with open(os.path.join(root, sid, "meta"), encoding="utf-8") as f:
                meta = json.load(f)
            sp = cls(root, sid, str(meta["service"]), meta.get("pid"), str(meta["stream"]), boot, emit)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        sp._load_segments()
        if not sp.segments:
            sp._new_segment(0)
        return sp

    def _load_segments(self) -> None:
        self.segments = sorted(int(n, 16) for n in os.listdir(self.dir)
                               if len(n) == 16 and all(c in "0123456789abcdef" for c in n))
        if self.segments:
            last = self.segments[-1]
            self.end = last + os.stat(self._path(last)).st_size
            self.wfd = os.open(self._path(last), os.O_WRONLY | os.O_CLOEXEC)
            self.parsed = self.segments[0]

    def resume(self, cursor: int | None) -> None:
        """Parse what the previous logd moved in but did not store."""
        if cursor is not None and self.segments and self.segments[0] <= cursor <= self.end:
            self.parsed = cursor
        self.pending = b""
        self._parse()

    def _new_segment(self, base: int) -> None:
        fd = os.open(self._path(base), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        for old in (self.wfd, self.rfd):
            if old >= 0:
                os.close(old)
        self.wfd, self.rfd = fd, -1
        self.segments.append(base)

    def _path(self, base: int) -> str:
        return os.path.join(self.dir, f"{base:016x}")

    # ----------------------------------------------------------- the pipe
    def move(self, pipe_fd: int) -> int:
        """Move what the pipe holds into the spool; the byte count, 0 at EOF.
        BlockingIOError when the pipe is empty."""
        base = self.segments[-1]
        n = os.splice(pipe_fd, self.wfd, SPLICE_MAX, offset_dst=self.end - base,
                      flags=getattr(os, "SPLICE_F_NONBLOCK", 2))
        if n:
            self.end += n
            self._parse()
        return n

    def _parse(self) -> None:
        start = self.parsed + len(self.pending)
        if start >= self.end:
            return
        data = self.pending + self._read(start, self.end)
        *lines, rest = data.split(b"\n")
        offset = self.parsed
        records: list[Record] = []
        self._now = (time.time_ns() // 1000, time.monotonic_ns() // 1000)
        default = self.default_priority
        for line in lines:
            end = offset + len(line) + 1
            if len(line) <= MAX_LINE and line[:1] != b"<" and line[-1:] != b"\r":
                records.append(self._record(default, line, end))  # the common case
            else:
                self._line(records, line, offset, end)
            offset = end
        while len(rest) > MAX_LINE:
            piece = split_long(rest)[0]
            self._line(records, piece, offset, offset + len(piece), partial=True)
            rest, offset = rest[len(piece):], offset + len(piece)
        self.pending, self.parsed = rest, offset
        self.emit(records)
        self._trim()

    def _line(self, out: list[Record], line: bytes, start: int, end: int, partial: bool = False) -> None:
        """Records of one line (pieces of 48 KiB when longer); each carries
        the offset after its own bytes, the last one ``end``."""
        if not partial and line.endswith(b"\r"):
            line = line[:-1]
        pieces = split_long(line) if len(line) > MAX_LINE else [line]
        prio, pieces[0] = parse_priority(pieces[0], self.default_priority)
        offset = start + (len(line) - sum(map(len, pieces)))  # the prefix
        for i, piece in enumerate(pieces):
            offset += len(piece)
            out.append(self._record(prio, piece, end if i == len(pieces) - 1 else offset))

    def _record(self, prio: int, text: bytes, cursor: int) -> Record:
        # One time for the lines of one read: they arrived together.
        realtime, monotonic = self._now
        return Record(realtime, monotonic, self.boot, self.service, self.pid, self.stream, prio, text,
                      None, [self.id, cursor])

    def flush_partial(self) -> None:
        """A partial line after a quiet moment (or at EOF) is a record."""
        if self.pending:
            self._now = (time.time_ns() // 1000, time.monotonic_ns() // 1000)
            prio, text = parse_priority(self.pending, self.default_priority)
            self.parsed += len(self.pending)
            self.pending = b""
            self.emit([self._record(prio, text, self.parsed)])

    def _read(self, start: int, end: int) -> bytes:
        chunks = []
        for i, base in enumerate(self.segments):
            seg_end = self.segments[i + 1] if i + 1 < len(self.segments) else self.end
            lo, hi = max(start, base), min(end, seg_end)
            if lo >= hi:
                continue
            if i == len(self.segments) - 1:
                if self.rfd < 0:
                    self.rfd = os.open(self._path(base), os.O_RDONLY | os.O_CLOEXEC)
                chunks.append(os.pread(self.rfd, hi - lo, lo - base))
                continue
            with open(self._path(base), "rb") as f:
                f.seek(lo - base)
                chunks.append(f.read(hi - lo))
        return b"".join(chunks)

    def _trim(self) -> None:
        """Begin a new segment once everything in this one is parsed."""
        if self.pending or self.parsed != self.end or self.end - self.segments[-1] < SEGMENT:
            return
        self._new_segment(self.end)
        for base in self.segments[:-1]:
            with contextlib.suppress(OSError):
                os.unlink(self._path(base))
        self.segments = self.segments[-1:]

    def remove(self) -> None:
        for fd in (self.wfd, self.rfd):
            if fd >= 0:
                os.close(fd)
        self.wfd = self.rfd = -1
        shutil.rmtree(self.dir, ignore_errors=True)
