"""svmgr's end of the socketpair to dynamod-init (fd in ``DYNAMOD_INIT_FD``).

svmgr sends a Heartbeat every interval (init kills an svmgr that misses
three), asks init for the final shutdown once its services are stopped
(RequestShutdown), and reports a failed root supervisor (Emergency). Init
sends ShutdownSignal when it received a shutdown signal, and Orphans: exit
statuses of processes that were reparented to it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from dynamod.ipc.framing import FrameDecoder, FrameError, encode_frame

SIGNAL_KINDS = {
    signal.SIGTERM: "poweroff",
    signal.SIGINT: "reboot",
    signal.SIGUSR1: "reboot",
    signal.SIGRTMIN + 3: "halt",
    signal.SIGRTMIN + 4: "poweroff",
    signal.SIGRTMIN + 5: "reboot",
}


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
        self.decoder = FrameDecoder(resync=True)
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
        try:
            self.sock.send(encode_frame({"id": self.seq, "kind": "event", "type": kind, "body": body}))
        except (BlockingIOError, FrameError, OSError) as exc:
            self.log(f"cannot send {kind} to init: {exc}")

    def _readable(self) -> None:
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
            try:
                self._message(payload)
            except Exception as exc:
                self.log(f"bad message from init: {type(exc).__name__}: {exc}")
        for err in self.decoder.errors:
            self.log(f"bad data from init: {err}")
        self.decoder.errors.clear()

    def _message(self, payload: dict[str, Any]) -> None:
        kind, body = payload.get("type"), payload.get("body") or {}
        if kind == "HeartbeatAck":
            return
        if kind == "ShutdownSignal":
            sig = int(body.get("signal", signal.SIGTERM))
            self.on_shutdown(SIGNAL_KINDS.get(sig, "poweroff"))
        elif kind == "Orphans":
            self.on_orphans([(int(p), int(s)) for p, s in body.get("exits", [])])
        else:
            self.log(f"ignoring {kind!r} from init")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.loop is not None and self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
