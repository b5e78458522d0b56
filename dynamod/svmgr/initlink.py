"""svmgr's end of the socketpair to dynamod-init (fd in ``DYNAMOD_INIT_FD``).

svmgr sends a Heartbeat every interval (init kills an svmgr that misses
three), asks init for the final shutdown once its services are stopped
(RequestShutdown), and reports a failed root supervisor (Emergency). Init
sends ShutdownSignal when it received a shutdown signal, and Orphans: exit
statuses of processes that were reparented to it.

The link is a SOCK_SEQPACKET socketpair (:mod:`dynamod.ipc.link`): whole
messages or nothing. A stream socket is still understood (a dynamod-init
started before an upgrade keeps running its old code until the next boot).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from dynamod.ipc import link
from dynamod.ipc.framing import FrameDecoder, FrameError, encode_frame
from dynamod.signals import SHUTDOWN_SIGNALS


class InitLink:
    def __init__(
        self,
        fd: int,
        *,
        on_shutdown: Callable[[str], None],
        on_orphans: Callable[[list[tuple[int, int]]], None],
        log: Callable[[str], None],
        interval: float = 5.0,
    ) -> None:
        # Services must never inherit this descriptor.
        os.set_inheritable(fd, False)
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(False)
        self.datagrams = self.sock.type == link.LINK_TYPE
        self.decoder = FrameDecoder(resync=True)  # for a stream link
        self.outbox = link.Outbox()
        self._writing = False
        self.on_shutdown = on_shutdown
        self.on_orphans = on_orphans
        self.log = log
        self.interval = interval
        self.seq = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_environment(cls, **kw: Any) -> InitLink | None:
        raw = os.environ.pop("DYNAMOD_INIT_FD", None)
        if raw is None:
            return None
        try:
            fd = int(raw)
            os.fstat(fd)
        except (ValueError, OSError):
            kw["log"](f"ignoring bad DYNAMOD_INIT_FD={raw!r}")
            return None
        try:
            kw.setdefault("interval", float(os.environ.pop("DYNAMOD_HEARTBEAT_INTERVAL", "5")))
        except ValueError:
            pass
        return cls(fd, **kw)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)
        self._heartbeat()

    def _heartbeat(self) -> None:
        self.seq += 1
        self.send("Heartbeat", {"seq": self.seq})
        assert self.loop is not None
        self._timer = self.loop.call_later(self.interval, self._heartbeat)

    def send(self, kind: str, body: dict[str, Any]) -> None:
        """Send whole, now or once the link is writable (at most 1 MiB
        waits; beyond, messages are dropped and counted)."""
        try:
            frame = encode_frame({"id": self.seq, "kind": "event", "type": kind, "body": body})
            if not self.datagrams:
                self.sock.send(frame)
                return
            dropped = self.outbox.dropped
            self.outbox.send(self.sock, frame)
        except (BlockingIOError, FrameError, OSError) as exc:
            self.log(f"cannot send {kind} to init: {exc}")
            return
        if self.outbox.dropped and not dropped:
            self.log(f"init does not read the link; dropping messages to it ({kind} first)")
        self._want_write()

    def _writable(self) -> None:
        try:
            empty = self.outbox.flush(self.sock)
        except OSError as exc:
            self.log(f"cannot send to init: {exc}")
            empty = True
        if empty and self.outbox.dropped:
            self.log(f"init reads the link again; {self.outbox.dropped} messages to it were dropped")
            self.outbox.dropped = 0
        self._want_write()

    def _want_write(self) -> None:
        on = bool(self.outbox)
        if on == self._writing or self.loop is None or self.sock.fileno() < 0:
            return
        if on:
            self.loop.add_writer(self.sock.fileno(), self._writable)
        else:
            self.loop.remove_writer(self.sock.fileno())
        self._writing = on

    def _message_guarded(self, payload: dict[str, Any]) -> None:
        try:
            self._message(payload)
        except Exception as exc:
            self.log(f"bad message from init: {type(exc).__name__}: {exc}")

    def _readable(self) -> None:
        if self.datagrams:
            if not link.receive(self.sock, self._message_guarded,
                                lambda problem: self.log(f"bad data from init: {problem}")):
                self.log("init closed the link")
                self.close()
            return
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.log("init closed the link")
            self.close()
            return
        for payload in self.decoder.feed(data):
            self._message_guarded(payload)
        for err in self.decoder.errors:
            self.log(f"bad data from init: {err}")
        self.decoder.errors.clear()

    def _message(self, payload: dict[str, Any]) -> None:
        kind, body = payload.get("type"), payload.get("body") or {}
        if kind == "HeartbeatAck":
            return
        if kind == "ShutdownSignal":
            sig = int(body.get("signal", signal.SIGTERM))
            self.on_shutdown(SHUTDOWN_SIGNALS.get(sig, "poweroff"))
        elif kind == "Orphans":
            self.on_orphans([(int(p), int(s)) for p, s in body.get("exits", [])])
        else:
            self.log(f"ignoring {kind!r} from init")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.loop is not None and self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            if self._writing:
                self.loop.remove_writer(self.sock.fileno())
                self._writing = False
        self.sock.close()
