"""The syslog socket (/dev/log): RFC 3164 and RFC 5424 datagrams.

Each datagram is one record. The sender's pid comes with SCM_CREDENTIALS
(SO_PASSCRED), and the record is credited to the dynamod service that pid
belongs to (its ``DYNAMOD_SERVICE`` environment variable, which svmgr sets
in every service process); a process outside any service is named by the
message's tag. ``extra`` keeps ``identifier`` (the tag) and ``facility``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import struct
import time
from collections.abc import Callable

from dynamod.logd.record import INFO, MAX_LINE, Record

MAX_DATAGRAM = 64 * 1024
_CRED = struct.Struct("3i")
_BSD_TIME = re.compile(rb"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d ")
_TAG = re.compile(rb"^([^\s:\[]{1,64})(?:\[(\d+)\])?: ?")


def parse(data: bytes) -> tuple[int, int, bytes, int | None, bytes]:
    """``(facility, priority, tag, pid, message)`` of one datagram."""
    fac, prio = 1, INFO  # user.info, as syslog(3) without a PRI
    m = re.match(rb"^<(\d{1,3})>", data)
    if m and int(m[1]) < 192:
        fac, prio = divmod(int(m[1]), 8)
        data = data[m.end():]
    data = data.rstrip(b"\n\0")
    if data.startswith(b"1 "):  # RFC 5424: VERSION TIMESTAMP HOST APP PROCID MSGID SD MSG
        parts = data.split(b" ", 6)
        if len(parts) >= 6:
            app, procid = parts[3], parts[4]
            rest = parts[6] if len(parts) > 6 else b""
            if parts[5:6] and rest.startswith(b"["):  # structured data: skip its elements
                depth_end = _sd_end(rest)
                rest = rest[depth_end:].lstrip(b" ")
            elif rest.startswith(b"- "):
                rest = rest[2:]
            elif rest == b"-":
                rest = b""
            if rest.startswith(b"\xef\xbb\xbf"):
                rest = rest[3:]
            pid = int(procid) if procid.isdigit() else None
            return fac, prio, (b"" if app == b"-" else app), pid, rest
    if _BSD_TIME.match(data):
        data = data[16:]
    m = _TAG.match(data)
    if m:
        return fac, prio, m[1], int(m[2]) if m[2] else None, data[m.end():]
    return fac, prio, b"", None, data


def _sd_end(text: bytes) -> int:
    """Where the structured-data elements at the start of ``text`` end."""
    i, in_elem, quoted = 0, False, False
    while i < len(text):
        c = text[i:i + 1]
        if quoted:
            if c == b"\\":
                i += 1
            elif c == b'"':
                quoted = False
        elif c == b"[":
            in_elem = True
        elif c == b'"' and in_elem:
            quoted = True
        elif c == b"]":
            in_elem = False
        elif c == b" " and not in_elem:
            return i
        i += 1
    return i


def service_of(pid: int | None) -> str | None:
    """The dynamod service a process belongs to, from its environment."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read(256 * 1024)
    except OSError:
        return None
    for item in env.split(b"\0"):
        if item.startswith(b"DYNAMOD_SERVICE="):
            return item[16:].decode("utf-8", "replace")
    return None


class SyslogSocket:
    def __init__(self, loop: asyncio.AbstractEventLoop, path: str, boot: str,
                 emit: Callable[[list[Record]], None], log: Callable[[str], None]) -> None:
        self.loop, self.path, self.boot, self.emit, self.log = loop, path, boot, emit, log
        self.sock: socket.socket | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind(self.path)
        os.chmod(self.path, 0o666)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        sock.setblocking(False)
        self.sock = sock
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self.sock is not None
        records: list[Record] = []
        for _ in range(256):
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(_CRED.size))
            except BlockingIOError:
                break
            except OSError as exc:
                self.log(f"{self.path}: {exc.strerror}")
                break
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _CRED.size:
                    pid = _CRED.unpack_from(payload)[0]
            fac, prio, tag, msg_pid, message = parse(data)
            sender = pid or msg_pid
            name = service_of(sender) or tag.decode("utf-8", "replace") or "syslog"
            extra = {"identifier": tag.decode("utf-8", "replace"), "facility": fac}
            records.append(Record(time.time_ns() // 1000, time.monotonic_ns() // 1000, self.boot, name,
                                  sender, "syslog", prio, message[:MAX_LINE], extra))
        self.emit(records)

    def close(self) -> None:
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
