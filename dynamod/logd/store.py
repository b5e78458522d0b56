"""Records on disk, in rotating segment files, and the ring of the newest.

The storage directory holds segment files named after the sequence number
of their first record (``0000000000000001.dlog``), each a run of record
frames (:mod:`dynamod.logd.record`). Records are appended to the newest
segment with one ``write(2)`` per batch; a segment that reaches
``max-file-size`` is closed and a new one begun, which starts with a
checkpoint record (stream ``logd``, no service) holding the spool cursors of
every open stream, so that a restarted logd reads only the newest segment
to learn where each stream stopped. Old segments are deleted, oldest first,
while there are more than ``max-files``, they take more than
``max-total-size``, or the file system has less than ``keep-free`` left.

A segment's tail that does not decode (a crash or a full disk in the middle
of a write) is cut off when logd opens the store. When the disk cannot
take a batch, the records stay in the ring, are counted in
:attr:`Store.unstored`, and logd goes on.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dynamod.logd.record import Record, decode

SUFFIX = ".dlog"
CHECKPOINT = "logd"


@dataclass
class Limits:
    max_file_size: int = 8 * 1024 * 1024
    max_files: int = 32
    max_total_size: int = 256 * 1024 * 1024
    keep_free: int = 64 * 1024 * 1024
    ring_records: int = 20000
    ring_bytes: int = 16 * 1024 * 1024


class Store:
    def __init__(self, directory: str, limits: Limits, log: Callable[[str], None],
                 cursors: Callable[[], dict[str, int]] = dict) -> None:
        self.dir = directory
        self.limits = limits
        self.log = log
        self.cursors = cursors  # open streams' positions, for checkpoints
        self.ring: deque[Record] = deque()
        self.ring_size = 0
        self.next_seq = 1
        self.unstored = 0
        self.fd = -1
        self.segment_size = 0
        self.segments: list[int] = []  # first seq of each segment, oldest first
        self._failing = False

    # ------------------------------------------------------------- opening
    def open(self) -> dict[str, int]:
        """Recover the store; the spool cursors found in the newest segment."""
        cursors: dict[str, int] = {}
        try:
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
            self.segments = sorted(int(n[:-len(SUFFIX)], 16) for n in os.listdir(self.dir)
                                   if n.endswith(SUFFIX) and _is_hex(n[:-len(SUFFIX)]))
        except OSError as exc:
            self._fail(f"cannot open the storage directory {self.dir}: {exc.strerror}")
            return cursors
        if not self.segments:
            return cursors
        path = self._path(self.segments[-1])
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            self._fail(f"cannot read {path}: {exc.strerror}")
            return cursors
        pos, last = 0, None
        while True:
            rec, end = decode(data, pos)
            if rec is None:
                break
            pos, last = end, rec
            if rec.cursor:
                cursors[rec.cursor[0]] = rec.cursor[1]
            if rec.stream == CHECKPOINT and rec.extra:
                cursors.update(rec.extra.get("cursors") or {})
            elif rec.stream != CHECKPOINT:
                self._ring_add(rec)
        if pos < len(data):
            self.log(f"{path}: cutting {len(data) - pos} bytes that are not a complete record")
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            os.ftruncate(self.fd, pos)
            os.lseek(self.fd, pos, os.SEEK_SET)
        except OSError as exc:
            self._fail(f"cannot append to {path}: {exc.strerror}")
        self.segment_size = pos
        self.next_seq = (last.seq + 1) if last is not None else self.segments[-1]
        if last is None and len(self.segments) > 1:
            self.next_seq = max(self.next_seq, self._last_seq_of(self.segments[-2]) + 1)
        return cursors

    def _last_seq_of(self, first: int) -> int:
        last = first - 1
        for rec in self._read_segment(first):
            last = rec.seq
        return last

    # ------------------------------------------------------------- writing
    def append(self, records: list[Record]) -> None:
        """Give each record its sequence number, keep it in the ring and
        write the batch to disk (one write)."""
        if not records:
            return
        for rec in records:
            rec.seq = self.next_seq
            self.next_seq += 1
        frames = [rec.encode() for rec in records]
        for rec, frame in zip(records, frames, strict=True):
            rec.size = len(frame)
            self._ring_add(rec)
        self._write(b"".join(frames), len(records), records[0].seq)

    def _write(self, data: bytes, count: int, first_seq: int) -> None:
        try:
            if self.fd < 0 or self.segment_size + len(data) > self.limits.max_file_size:
                self._rotate(first_seq)
            written = 0
            while written < len(data):
                written += os.write(self.fd, data[written:])
        except OSError as exc:
            self.unstored += count
            # A torn write would hide every record after it: cut it off.
            if self.fd >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, self.segment_size)
                    os.lseek(self.fd, self.segment_size, os.SEEK_SET)
            self._fail(f"cannot store log records in {self.dir}: {exc.strerror}")
            return
        self.segment_size += len(data)
        if self._failing:
            self._failing = False
            self.log(f"storing log records in {self.dir} again ({self.unstored} could not be stored)")

    def _rotate(self, first_seq: int) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        self.segments.append(first_seq)
        self.fd = os.open(self._path(first_seq), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        self.segment_size = 0
        cp = Record(0, 0, "", "", None, CHECKPOINT, 7, b"", {"cursors": self.cursors()}, None, first_seq - 1)
        frame = cp.encode()
        os.write(self.fd, frame)
        self.segment_size = len(frame)
        self._enforce()

    def _enforce(self) -> None:
        """Delete the oldest segments (never the one being written) while a
        limit is exceeded."""
        while len(self.segments) > 1:
            sizes = [self._size(s) for s in self.segments]
            over = (len(self.segments) > self.limits.max_files
                    or sum(sizes) > self.limits.max_total_size
                    or self._free() < self.limits.keep_free)
            if not over:
                return
            oldest = self.segments.pop(0)
            with contextlib.suppress(OSError):
                os.unlink(self._path(oldest))

    def _fail(self, message: str) -> None:
        if not self._failing:
            self._failing = True
            self.log(message)

    def _free(self) -> int:
        try:
            st = os.statvfs(self.dir)
        except OSError:
            return 1 << 62
        return st.f_bavail * st.f_frsize

    def _size(self, first: int) -> int:
        try:
            return os.stat(self._path(first)).st_size
        except OSError:
            return 0

    def _path(self, first: int) -> str:
        return os.path.join(self.dir, f"{first:016x}{SUFFIX}")

    def sync(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self.fd)

    # ------------------------------------------------------------- the ring
    def _ring_add(self, rec: Record) -> None:
        if not rec.size:
            rec.size = len(rec.message) + 64
        self.ring.append(rec)
        self.ring_size += rec.size
        while len(self.ring) > 1 and (len(self.ring) > self.limits.ring_records
                                      or self.ring_size > self.limits.ring_bytes):
            self.ring_size -= self.ring.popleft().size

    # ------------------------------------------------------------- reading
    def _read_segment(self, first: int) -> Iterator[Record]:
        try:
            with open(self._path(first), "rb") as f:
                data = f.read()
        except OSError:
            return
        pos = 0
        while True:
            rec, pos = decode(data, pos)
            if rec is None:
                return
            if rec.stream != CHECKPOINT:
                yield rec

    def backward(self) -> Iterator[Record]:
        """Every record, newest first: the ring, then the segments before it."""
        lowest = None
        for rec in reversed(self.ring):
            lowest = rec.seq
            yield rec
        for first in reversed(list(self.segments)):
            if lowest is not None and first >= lowest:
                continue
            for rec in reversed(list(self._read_segment(first))):
                if lowest is None or rec.seq < lowest:
                    yield rec

    def forward(self, after: int) -> Iterator[Record]:
        """Every record with a sequence number above ``after``, oldest first."""
        ring_first = self.ring[0].seq if self.ring else self.next_seq
        if after + 1 < ring_first:
            segs = list(self.segments)
            start = 0
            for i, first in enumerate(segs):
                if first <= after + 1:
                    start = i
            for first in segs[start:]:
                if first >= ring_first:
                    break
                for rec in self._read_segment(first):
                    if after < rec.seq < ring_first:
                        yield rec
        for rec in list(self.ring):
            if rec.seq > after:
                yield rec


def _is_hex(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)
