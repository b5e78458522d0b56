"""The service pipes logd holds, and the link to svmgr that hands them over.

svmgr connects to ``RUNTIME/logd-streams.sock`` (SOCK_SEQPACKET, mode 0600:
one framed message per packet, the pipes' reading ends attached with
SCM_RIGHTS) and sends ``StreamAttach`` for every service pipe. logd moves
each pipe into its spool (:mod:`dynamod.logd.spool`) and tells every
connected svmgr ``StreamClosed`` when a pipe reached EOF (svmgr then closes
its own copy). A restarted svmgr sends ``TakeStreams`` and gets the ends
logd holds back in ``Streams`` messages (up to 200 ends each), so that the
services it adopts keep logging. ``LogRecord`` stores one record (svmgr's
own life-cycle events, and what svmgr read before logd ran).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable

from dynamod.ipc.fdpass import FDS_PER_MESSAGE, receive, send_with_fds
from dynamod.ipc.framing import encode_frame
from dynamod.ipc.schema import Message, event
from dynamod.logd.record import INFO, Record
from dynamod.logd.spool import Spool

QUIET = 0.25  # a partial line is a record after this long without more data
MOVES_PER_WAKEUP = 16  # one busy pipe cannot starve the others


class Streams:
    """Every pipe logd holds, by stream id."""

    def __init__(self, loop: asyncio.AbstractEventLoop, spool_dir: str, boot: str,
                 emit: Callable[[list[Record]], None], log: Callable[[str], None]) -> None:
        self.loop, self.root, self.boot, self.emit, self.log = loop, spool_dir, boot, emit, log
        self.spools: dict[str, Spool] = {}
        self.fds: dict[str, int] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.on_closed: list[Callable[[str], None]] = []
        # Where the streams without a spool now stopped (the pipe is with
        # svmgr): a new spool of one continues there.
        self.known: dict[str, int] = {}

    def recover(self, cursors: dict[str, int]) -> None:
        """Parse what a previous logd moved into its spools but did not store."""
        self.known = dict(cursors)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        for sid in sorted(os.listdir(self.root)):
            sp = Spool.recover(self.root, sid, self.boot, self.emit)
            if sp is None:
                self.log(f"spool {sid}: no valid meta file; leaving it")
                continue
            sp.resume(cursors.get(sid))
            self.spools[sid] = sp
            if sp.pending:
                self._arm(sid, sp)
            else:
                self._retire(sid)

    def cursors(self) -> dict[str, int]:
        return {**self.known, **{sid: sp.parsed for sid, sp in self.spools.items()}}

    def _retire(self, sid: str) -> None:
        """Remove the spool of a stream logd does not read now (all of it
        is parsed); svmgr still holds the pipe."""
        sp = self.spools.pop(sid)
        sp.flush_partial()
        self.known[sid] = sp.parsed
        sp.remove()

    def attach(self, sid: str, service: str, pid: int | None, stream: str, fd: int) -> None:
        if sid in self.fds:
            os.close(fd)  # the same pipe again (svmgr re-sends after a reconnect)
            return
        sp = self.spools.get(sid)
        if sp is None:
            sp = Spool(self.root, sid, service, pid, stream, self.boot, self.emit)
            try:
                sp.create(self.known.get(sid, 0))
            except OSError as exc:
                # Without a spool the pipe stays unread: the service's output
                # waits in it (or blocks the service), it is not dropped.
                self.log(f"{service}: cannot create the spool of stream {sid}: {exc.strerror}")
                os.close(fd)
                return
            self.spools[sid] = sp
        self.fds[sid] = fd
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._readable, sid)

    def _readable(self, sid: str) -> None:
        sp, fd = self.spools[sid], self.fds[sid]
        try:
            for _ in range(MOVES_PER_WAKEUP):
                if sp.move(fd) == 0:
                    self._eof(sid)
                    return
        except BlockingIOError:
            pass
        except OSError as exc:
            self.log(f"{sp.service}: stream {sid}: {exc.strerror}; closing it")
            self._eof(sid)
            return
        self._arm(sid, sp)

    def _arm(self, sid: str, sp: Spool) -> None:
        old = self.timers.pop(sid, None)
        if old is not None:
            old.cancel()
        if sp.pending:
            self.timers[sid] = self.loop.call_later(QUIET, self._quiet, sid)

    def _quiet(self, sid: str) -> None:
        self.timers.pop(sid, None)
        sp = self.spools.get(sid)
        if sp is not None:
            sp.flush_partial()
            if sid not in self.fds:
                self._retire(sid)

    def _eof(self, sid: str) -> None:
        fd = self.fds.pop(sid)
        self.loop.remove_reader(fd)
        os.close(fd)
        timer = self.timers.pop(sid, None)
        if timer is not None:
            timer.cancel()
        sp = self.spools.pop(sid)
        sp.flush_partial()
        sp.remove()
        self.known.pop(sid, None)
        for fn in self.on_closed:
            fn(sid)

    def held(self) -> list[tuple[dict, int]]:
        return [({"id": sid, "service": self.spools[sid].service, "pid": self.spools[sid].pid,
                  "stream": self.spools[sid].stream}, fd) for sid, fd in self.fds.items()]

    def close(self) -> None:
        for sid, fd in list(self.fds.items()):
            self.loop.remove_reader(fd)
            os.close(fd)
            del self.fds[sid]
        for timer in self.timers.values():
            timer.cancel()
        for sid in list(self.spools):
            self._retire(sid)


class StreamLink:
    """The SOCK_SEQPACKET server svmgr connects to."""

    def __init__(self, loop: asyncio.AbstractEventLoop, path: str, streams: Streams,
                 record: Callable[[dict], None], log: Callable[[str], None]) -> None:
        self.loop, self.path, self.streams, self.record, self.log = loop, path, streams, record, log
        self.sock: socket.socket | None = None
        self.peers: set[socket.socket] = set()
        streams.on_closed.append(self._closed)

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        sock.listen(16)
        sock.setblocking(False)
        self.sock = sock
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self.sock is not None
        try:
            peer, _ = self.sock.accept()
        except OSError:
            return
        _pid, uid, _gid = struct.unpack("3i", peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if uid not in (0, os.getuid()):
            peer.close()
            return
        peer.setblocking(False)
        self.peers.add(peer)
        self.loop.add_reader(peer.fileno(), self._readable, peer)

    def _readable(self, peer: socket.socket) -> None:
        got = receive(peer, lambda m: self.log(f"svmgr link: {m}"))
        if got is None:
            self._drop(peer)
            return
        msgs, fds = got
        stored: dict[str, int] = {}
        for msg in msgs:
            fds = self._handle(peer, msg, fds, stored)
        for fd in fds:  # ends no message claimed
            os.close(fd)
        for source, n in stored.items():
            self._send(peer, encode_frame(event("Stored", {"source": source, "n": n}).to_payload()), [])

    def _handle(self, peer: socket.socket, msg: Message, fds: list[int], stored: dict[str, int]) -> list[int]:
        b = msg.body
        if msg.type == "StreamAttach":
            if not fds:
                self.log(f"svmgr link: StreamAttach {b['id']} without a descriptor")
                return fds
            self.streams.attach(b["id"], b["service"], b.get("pid"), b["stream"], fds[0])
            return fds[1:]
        if msg.type == "LogRecord":
            source, n = b.get("source"), b.get("n")
            if source is None or n is None:
                self.record(b)
            else:
                # Numbered: svmgr sends it again until it is acknowledged, and
                # the cursor [source, n] in the store drops a repeat.
                if n > self.streams.known.get(source, 0):
                    self.record(b)
                    self.streams.known[source] = n
                stored[source] = max(n, stored.get(source, 0))
        elif msg.type == "TakeStreams":
            self._hand_back(peer)
        return fds

    def _hand_back(self, peer: socket.socket) -> None:
        held = self.streams.held()
        chunks = [held[i:i + FDS_PER_MESSAGE] for i in range(0, len(held), FDS_PER_MESSAGE)] or [[]]
        for i, chunk in enumerate(chunks):
            frame = encode_frame(event("Streams", {"streams": [m for m, _ in chunk],
                                                   "last": i == len(chunks) - 1}).to_payload())
            self._send(peer, frame, [fd for _, fd in chunk])

    def _closed(self, sid: str) -> None:
        frame = encode_frame(event("StreamClosed", {"id": sid}).to_payload())
        for peer in list(self.peers):
            self._send(peer, frame, [])

    def _send(self, peer: socket.socket, frame: bytes, fds: list[int]) -> None:
        # A tiny message on a local socket: blocking briefly beats losing it.
        peer.setblocking(True)
        peer.settimeout(5)
        try:
            send_with_fds(peer, frame, fds)
        except OSError as exc:
            self.log(f"svmgr link: cannot send: {exc}")
            self._drop(peer)
        finally:
            if peer in self.peers:
                peer.setblocking(False)

    def _drop(self, peer: socket.socket) -> None:
        if peer in self.peers:
            self.peers.discard(peer)
            self.loop.remove_reader(peer.fileno())
            peer.close()

    def close(self) -> None:
        for peer in list(self.peers):
            self._drop(peer)
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


def record_from(body: dict, boot: str) -> Record:
    """A LogRecord message as a record."""
    msg = body["message"]
    now = time.time()
    when = body.get("time") or now
    extra = {"unit": body["unit"]} if body.get("unit") else None
    cursor = [body["source"], body["n"]] if body.get("source") and body.get("n") is not None else None
    return Record(int(when * 1e6), time.monotonic_ns() // 1000, boot, body["service"], body.get("pid"),
                  body.get("stream") or "manager", max(0, min(7, body.get("priority", INFO))),
                  msg.encode("utf-8", "surrogateescape") if isinstance(msg, str) else msg, extra, cursor)
