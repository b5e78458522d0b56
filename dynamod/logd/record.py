"""One log record and its on-disk form.

A record is a frame ``"DR" | u32 length | u32 crc32 | msgpack array`` (all
little-endian). The CRC lets a reader tell a record cut short by a crash (or
a disk that filled up) from a complete one: storage ends at the first frame
that does not check out. The array's items are listed in :data:`FIELDS`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgpack

MAGIC = b"DR"
HEADER = struct.Struct("<2sII")
MAX_RECORD = 1024 * 1024  # a frame longer than this is corrupt
MAX_LINE = 48 * 1024  # a line longer than this is split (the same bound as svmgr's)
_pack = msgpack.Packer(use_bin_type=True).pack

# Priorities of syslog(3).
EMERG, ALERT, CRIT, ERR, WARNING, NOTICE, INFO, DEBUG = range(8)
PRIORITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FIELDS = ("seq", "realtime", "monotonic", "boot", "service", "pid", "stream", "priority",
          "message", "extra", "cursor")


@dataclass(slots=True)
class Record:
    """``realtime``/``monotonic`` are microseconds (CLOCK_REALTIME and
    CLOCK_MONOTONIC when logd received the line); ``boot`` the kernel's boot
    id; ``stream`` one of stdout, stderr, syslog, journal, manager, logd;
    ``message`` raw bytes (binary-safe); ``extra`` further fields (journal
    fields, ``unit`` for the manager's records of a service); ``cursor``
    ``[stream id, spool offset]`` for lines read from a service pipe (how a
    restarted logd knows where it stopped). ``seq`` is given by the store."""

    realtime: int
    monotonic: int
    boot: str
    service: str
    pid: int | None
    stream: str
    priority: int
    message: bytes
    extra: dict[str, Any] | None = None
    cursor: list | None = None
    seq: int = 0
    size: int = field(default=0, compare=False)

    def encode(self) -> bytes:
        payload = _pack([self.seq, self.realtime, self.monotonic, self.boot, self.service,
                         self.pid, self.stream, self.priority, self.message, self.extra, self.cursor])
        return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload

    def text(self) -> str:
        return self.message.decode("utf-8", "replace")

    def unit(self) -> str:
        """The service the record is about (the manager's records name one)."""
        if self.extra and isinstance(self.extra.get("unit"), str):
            return self.extra["unit"]
        return self.service

    def to_map(self) -> dict[str, Any]:
        """The record as the query protocol sends it (docs/protocol.md)."""
        out = {"seq": self.seq, "time": self.realtime / 1e6, "monotonic": self.monotonic / 1e6,
               "boot": self.boot, "service": self.service, "pid": self.pid,
               "stream": self.stream, "priority": self.priority, "message": self.message}
        if self.extra:
            out["extra"] = self.extra
        return out


def decode(buf: bytes | memoryview, pos: int) -> tuple[Record | None, int]:
    """The record at ``pos`` and the position after it; ``(None, pos)`` when
    what is there is not a complete, intact record."""
    if len(buf) - pos < HEADER.size:
        return None, pos
    magic, length, crc = HEADER.unpack_from(buf, pos)
    start = pos + HEADER.size
    if magic != MAGIC or length > MAX_RECORD or len(buf) - start < length:
        return None, pos
    payload = bytes(buf[start:start + length])
    if zlib.crc32(payload) != crc:
        return None, pos
    try:
        items = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        seq, rt, mono, boot, service, pid, stream, prio, message, extra, cursor = items
        rec = Record(rt, mono, boot, service, pid, stream, prio, message, extra, cursor, seq)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None, pos
    rec.size = HEADER.size + length
    return rec, start + length


def parse_priority(line: bytes, default: int) -> tuple[int, bytes]:
    """The sd-daemon(3) ``<N>`` prefix: priority N (0-7) and the rest."""
    if len(line) >= 3 and line[0] == 0x3C and line[2] == 0x3E and 0x30 <= line[1] <= 0x37:
        return line[1] - 0x30, line[3:]
    return default, line


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


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip().replace("-", "")
    except OSError:
        return "0" * 32
