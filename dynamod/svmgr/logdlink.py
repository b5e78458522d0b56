"""svmgr's side of the pipe handoff to dynamod-logd (docs/logd.md).

svmgr creates every service's stdout and stderr pipe and keeps a copy of
each reading end for as long as the pipe lives. Before logd has ever been
reached, svmgr reads the pipes itself into the per-service rings
(:mod:`dynamod.svmgr.logbuf`). Once it reaches logd's link socket
(``RUNTIME/logd-streams.sock``), it stops reading, hands over what the rings
hold as records, and passes every reading end to logd (SCM_RIGHTS). From
then on svmgr never reads a pipe again: while logd is down, output waits in
the pipe, and when logd comes back svmgr passes the ends again (logd knows
from its spool where each stopped). A restarted svmgr asks logd for the ends
it holds (``TakeStreams``), so the services it adopts keep logging.

svmgr's own life-cycle events (state changes, job results) go to logd as
records of ``dynamod-svmgr`` about the service (``unit``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from dynamod.ipc.fdpass import receive, send_with_fds
from dynamod.ipc.framing import FrameError, encode_frame
from dynamod.ipc.schema import SchemaError, event
from dynamod.logd.record import ERR, INFO, NOTICE, parse_priority
from dynamod.svmgr.logbuf import PipeReader

if TYPE_CHECKING:
    from dynamod.svmgr.manager import Manager
    from dynamod.svmgr.spawn import Spawned

RETRY = 0.2  # how often svmgr tries to reach logd while it is not connected
RETRY_UNEXPECTED = 2.0  # ... when no dynamod-logd service is configured (one may run outside)
MANAGER = "dynamod-svmgr"
# Before logd first comes svmgr keeps what it reads, up to EARLY_PIPE bytes
# per pipe (then it stops reading: the rest waits in the pipe); after
# EARLY_WAIT without logd it writes what it kept to the kernel log and goes
# on reading, keeping the newest EARLY_TOTAL bytes for a logd that comes late.
EARLY_PIPE = 256 * 1024
EARLY_TOTAL = 4 * 1024 * 1024
QUEUE_WHILE_DOWN = 10000
LOGD_SERVICE = "dynamod-logd"
EARLY_WAIT = float(os.environ.get("DYNAMOD_LOGD_WAIT", "30"))


class Held:
    __slots__ = ("early_size", "fd", "name", "pid", "reader", "stream")

    def __init__(self, name: str, pid: int | None, stream: str, fd: int) -> None:
        self.name, self.pid, self.stream, self.fd = name, pid, stream, fd
        self.reader: PipeReader | None = None
        self.early_size = 0


class LogdLink:
    def __init__(self, manager: Manager) -> None:
        self.m = manager
        self.loop = manager.loop
        self.path = os.path.join(manager.runtime_dir, "logd-streams.sock")
        self.held: dict[str, Held] = {}
        self.sock: socket.socket | None = None
        self.seen = False  # logd was reached once
        # svmgr reads the pipes itself: before logd first comes, and after
        # the dynamod-logd service was stopped or failed for good.
        self.reading = True
        # Hold output back for logd (see EARLY_PIPE) only where a logd is
        # configured to come.
        self.expected = LOGD_SERVICE in manager.engine.services
        self.queue: deque[tuple[bytes, list[int]]] = deque()  # to send on this connection
        # LogRecords are numbered and kept until logd says they are stored
        # (Stored): the ones a killed logd had not yet read are sent again.
        self.source = "svmgr-" + os.urandom(8).hex()
        self.numbered = 0
        self.unacked: deque[tuple[int, bytes]] = deque()
        self.unacked_dropped = 0
        self.taken = 0  # pipes got back from logd (TakeStreams) so far
        self.early: deque[dict[str, Any]] = deque()  # LogRecord bodies, oldest first
        self.early_size = 0
        self.early_dropped = 0
        self.gave_up = False  # EARLY_WAIT passed without logd
        self.kmsg: Any = None  # (level, message) -> None: init's LogToKmsg, when under init
        self._writing = False
        self._timer: Any = None
        manager.listeners.append(self._state_changed)
        manager.publisher.job_listeners.append(self._job)

    def start(self) -> None:
        self._try_connect()
        if not self.seen and self.expected:
            self.loop.call_later(EARLY_WAIT, self._give_up)

    # --------------------------------------------------------------- pipes
    def add_output(self, name: str, spawned: Spawned) -> None:
        """The stdout and stderr pipes of a process svmgr just spawned."""
        self.add(name, spawned.pid, "stdout", spawned.output_fd)
        if spawned.error_fd >= 0:
            self.add(name, spawned.pid, "stderr", spawned.error_fd)

    def add(self, name: str, pid: int | None, stream: str, fd: int) -> None:
        """A new pipe of service ``name``: svmgr keeps this end."""
        sid = os.urandom(16).hex()
        h = self.held[sid] = Held(name, pid, stream, fd)
        if self.sock is not None and not self.reading:
            self._attach(sid, h)
        elif self.reading:
            self._read(sid, h)

    def _read(self, sid: str, h: Held) -> None:
        h.reader = PipeReader(self.loop, h.fd, self.m.handle(h.name).log_buffer,
                              on_eof=lambda: self.held.pop(sid, None), stream=h.stream,
                              on_line=(lambda piece: self._early_line(h, piece)) if self.expected else None)

    def _early_line(self, h: Held, piece: bytes) -> None:
        prio, msg = parse_priority(piece, ERR if h.stream == "stderr" else INFO)
        self._keep({"service": h.name, "pid": h.pid, "priority": prio, "message": msg,
                    "time": time.time(), "stream": h.stream})
        h.early_size += len(piece) + 1
        if h.early_size > EARLY_PIPE and self.expected and not self.gave_up and not self.seen \
                and h.reader is not None:
            h.reader.pause(True)

    def _keep(self, body: dict[str, Any]) -> None:
        self.early.append(body)
        self.early_size += len(body["message"]) + 64
        while self.early_size > EARLY_TOTAL and len(self.early) > 1:
            old = self.early.popleft()
            self.early_size -= len(old["message"]) + 64
            self.early_dropped += 1

    def _give_up(self) -> None:
        """logd did not come: the kernel log gets what svmgr kept, and svmgr
        reads the pipes on (into its rings) so that no service blocks."""
        if self.seen or not self.reading:
            return
        self.gave_up = True
        self.m.log(f"dynamod-logd did not come within {EARLY_WAIT:g}s; service output goes to "
                   "svmgr's memory" + (" and the kernel log" if self.kmsg is not None else ""))
        if self.kmsg is not None:
            for body in self.early:
                msg = body["message"]
                text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
                self.kmsg(body["priority"], f"{body.get('unit') or body['service']}: {text}")
        for h in self.held.values():
            if h.reader is not None:
                h.reader.pause(False)

    def _attach(self, sid: str, h: Held) -> None:
        self._send("StreamAttach", {"id": sid, "service": h.name, "pid": h.pid, "stream": h.stream}, [h.fd])

    def _hand_over_early(self) -> None:
        """What svmgr read before logd ran becomes records, then the pipes
        go to logd (in that order, on one socket: nothing is reordered)."""
        self.reading = False
        for h in self.held.values():
            if h.reader is not None:
                h.reader.detach()
                h.reader = None
        if self.early_dropped:
            self.record("", f"{self.early_dropped} lines written before dynamod-logd ran were dropped "
                        f"(svmgr keeps at most {EARLY_TOTAL // 1048576} MiB)", ERR)
            self.early_dropped = 0
        for body in self.early:
            self._send("LogRecord", body)
        self.early.clear()
        self.early_size = 0
        for h in self.held.values():
            h.early_size = 0

    def record(self, unit: str, message: str, priority: int = NOTICE) -> None:
        if self.reading and not self.expected:
            return
        body = {"service": MANAGER, "unit": unit, "priority": priority, "message": message,
                "time": time.time()}
        if not self.reading:
            self._send("LogRecord", body)  # queued while logd is down
        else:
            self._keep(body)  # handed over when logd first comes

    def _state_changed(self, ev: dict[str, Any]) -> None:
        if ev["name"] == LOGD_SERVICE and ev["new"] in ("stopped", "failed") and not self.reading:
            # Stopped on purpose or given up on: nobody would read the pipes.
            self.m.log("dynamod-logd is down for good; svmgr reads service output itself until it is back")
            self.reading = True
            self.gave_up = True
            for sid, h in list(self.held.items()):
                if h.reader is None:
                    self._read(sid, h)
        reason = f" ({ev['reason']})" if ev.get("reason") else ""
        prio = ERR if ev["new"] in ("failed", "blocked") else NOTICE
        self.record(ev["name"], f"{ev['old']} -> {ev['new']}{reason}", prio)

    def _job(self, kind: str, job: Any) -> None:
        if kind == "removed":
            reason = f" ({job.reason})" if job.reason and job.result != "done" else ""
            self.record(job.unit, f"job {job.id} {job.type}: {job.result}{reason}",
                        NOTICE if job.result in ("done", "skipped") else ERR)

    # ---------------------------------------------------------- connection
    def _try_connect(self) -> None:
        self._timer = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            self._timer = self.loop.call_later(RETRY if self.expected else RETRY_UNEXPECTED, self._try_connect)
            return
        sock.setblocking(False)
        self.sock = sock
        self.loop.add_reader(sock.fileno(), self._readable)
        first = self.reading
        self.seen = True
        self._send("TakeStreams", {}, [])
        # Records logd has not confirmed go first (it drops repeats).
        self.queue.extend((frame, []) for _n, frame in self.unacked)
        if first:
            self._hand_over_early()
        for sid, h in list(self.held.items()):
            self._attach(sid, h)

    def _disconnected(self) -> None:
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            if self._writing:
                self.loop.remove_writer(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self._writing = False
        # Records wait in self.unacked; pipes are attached afresh.
        for _frame, fds in self.queue:
            for fd in fds:
                os.close(fd)
        self.queue.clear()
        if self._timer is None:
            self._timer = self.loop.call_later(RETRY if self.expected else RETRY_UNEXPECTED, self._try_connect)

    def _readable(self) -> None:
        assert self.sock is not None
        got = receive(self.sock, lambda m: self.m.log(f"logd link: {m}"))
        if got is None:
            self._disconnected()
            return
        msgs, fds = got
        for msg in msgs:
            if msg.type == "Stored" and msg.body["source"] == self.source:
                while self.unacked and self.unacked[0][0] <= msg.body["n"]:
                    self.unacked.popleft()
            elif msg.type == "StreamClosed":
                h = self.held.pop(msg.body["id"], None)
                if h is not None:
                    with contextlib.suppress(OSError):
                        os.close(h.fd)
            elif msg.type == "Streams":
                for meta, fd in zip(msg.body["streams"], fds, strict=False):
                    sid = meta.get("id")
                    if isinstance(sid, str) and sid not in self.held:
                        self.held[sid] = Held(str(meta.get("service")), meta.get("pid"),
                                              str(meta.get("stream")), fd)
                        self.taken += 1
                    else:
                        os.close(fd)
                fds = fds[len(msg.body["streams"]):]
                if msg.body["last"]:
                    self.m.log(f"dynamod-logd holds {self.taken} service pipes for this svmgr")
                    self.taken = 0
        for fd in fds:
            os.close(fd)

    def _send(self, type_: str, body: dict, fds: list[int] | None = None) -> None:
        numbered = type_ == "LogRecord"
        if self.sock is None and not numbered:
            return
        if numbered:
            self.numbered += 1
            body = {**body, "source": self.source, "n": self.numbered}
        try:
            frame = encode_frame(event(type_, body).to_payload())
        except (SchemaError, FrameError, ValueError) as exc:
            self.m.log(f"logd link: cannot send {type_}: {exc}")
            return
        if numbered:
            self.unacked.append((self.numbered, frame))
            if len(self.unacked) > QUEUE_WHILE_DOWN:
                self.unacked.popleft()  # logd gone a long time: the newest are kept
                self.unacked_dropped += 1
            if self.sock is None:
                return
        # Duplicates: an end may be closed (StreamClosed) while queued.
        self.queue.append((frame, [os.dup(fd) for fd in fds or ()]))
        self._flush()

    def _flush(self) -> None:
        while self.queue and self.sock is not None:
            frame, fds = self.queue[0]
            try:
                send_with_fds(self.sock, frame, fds)
            except BlockingIOError:
                if not self._writing:
                    self._writing = True
                    self.loop.add_writer(self.sock.fileno(), self._writable)
                return
            except OSError:
                self._disconnected()
                return
            self.queue.popleft()
            for fd in fds:
                os.close(fd)
        if self._writing and self.sock is not None:
            self._writing = False
            self.loop.remove_writer(self.sock.fileno())

    def _writable(self) -> None:
        self._flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.sock is not None:
            self._flush()
        self._disconnected()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for h in self.held.values():
            if h.reader is not None:
                h.reader.close()
            else:
                with contextlib.suppress(OSError):
                    os.close(h.fd)
        self.held.clear()
