"""Asyncio Unix-socket server for the control protocol (used by svmgr).

The server owns framing, validation, Hello/version negotiation, per-request
tasks, peer credentials and back-pressure; the *handler* owns meaning
(including the root/read-only permission rule, see READ_ONLY_REQUESTS).

Error policy: a connection whose byte stream cannot be trusted any more (bad
magic, oversize length, undecodable payload, truncated frame at EOF, an
envelope that cannot be answered) is closed; a well-framed request with a bad
body or an unknown type gets ``Error bad-request`` and the connection stays
open. Nothing a client sends can stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
import struct
import sys
import traceback
from collections import deque
from collections.abc import Awaitable, Callable

from dynamod.ipc.framing import FrameDecoder, FrameError, encode_frame
from dynamod.ipc.schema import PROTOCOL_VERSION, Message, SchemaError, error, response

Handler = Callable[["Connection", Message], Awaitable["Message | None"]]
Log = Callable[[str], None]

MAX_WRITE_BUFFER = 1024 * 1024
# Requests one connection may have in flight before the server stops reading
# from it: a client cannot make the server spawn unbounded tasks.
MAX_INFLIGHT = 64
_CRED = struct.Struct("3i")


def _stderr_log(message: str) -> None:
    print(f"dynamod-ipc: {message}", file=sys.stderr, flush=True)


class Connection(asyncio.Protocol):
    """One accepted client.

    Public attributes: ``peer_pid``, ``peer_uid``, ``peer_gid`` (SO_PEERCRED,
    taken when the connection is accepted), ``closed``, ``subscribed`` (set by
    the handler; used by :meth:`ControlServer.broadcast`), ``client_name`` and
    ``client_version`` (from Hello, None before), and ``on_close``: callables
    run with this connection once it is closed.
    """

    def __init__(self, server: ControlServer) -> None:
        self._server = server
        self._loop = server._loop
        self._transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder()
        self._tasks: set[asyncio.Task] = set()
        self._backlog: deque[dict] = deque()  # decoded, waiting for a handler slot
        self._paused = False
        self._eof = False
        self.peer_pid = 0
        self.peer_uid = -1
        self.peer_gid = -1
        self.closed = False
        self.subscribed = False
        self.client_name: str | None = None
        self.client_version: int | None = None
        self.on_close: list[Callable[[Connection], object]] = []

    def __repr__(self) -> str:
        return f"<Connection pid={self.peer_pid} uid={self.peer_uid} closed={self.closed}>"

    # -- public API -----------------------------------------------------------

    def send(self, msg: Message) -> None:
        """Send a message to this client. Callable from any thread; silently
        dropped if the connection is closed. Raises SchemaError/FrameError if
        the message is invalid or too large (a bug in the caller)."""
        if self.closed:
            return
        self._send_frame(encode_frame(msg.to_payload()))

    def close(self) -> None:
        """Close the connection after flushing what was already sent.
        Callable from any thread."""
        self._call(self._close_now)

    # -- internals: writing ---------------------------------------------------

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            fn(*args)
            return
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # loop closed: the connection is gone anyway

    def _send_frame(self, frame: bytes) -> None:
        self._call(self._write, frame)

    def _write(self, frame: bytes) -> None:
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            return
        transport.write(frame)
        size = transport.get_write_buffer_size()
        if size > self._server.max_write_buffer:
            # A client that stops reading (typically a stuck subscriber) must
            # not make the manager buffer without bound.
            self._server.log(f"{self!r}: not reading, {size} bytes pending; disconnecting")
            self._abort()

    def _close_now(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _protocol_error(self, problem: str) -> None:
        self._server.log(f"{self!r}: protocol error, closing: {problem}")
        self._abort()

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        try:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
            self.peer_pid, self.peer_uid, self.peer_gid = _CRED.unpack(creds)
        except OSError as exc:
            # Unknown peer = unprivileged peer: uid -1 is never root.
            self._server.log(f"SO_PEERCRED failed: {exc}")
        self._server._connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._backlog.extend(self._decoder.feed(data))
        except FrameError as exc:
            self._protocol_error(str(exc))
            return
        self._drain_backlog()

    def eof_received(self) -> bool:
        if self._decoder.buffered:
            self._protocol_error(f"truncated frame at EOF ({self._decoder.buffered} bytes)")
            return False
        # Half-close: the client may have shut down its write side and still
        # wait for answers to requests in flight.
        self._eof = True
        return not self._idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._server._connections.discard(self)
        callbacks, self.on_close = self.on_close, []
        for cb in callbacks:
            try:
                cb(self)
            except Exception:
                self._server.log(f"on_close callback failed:\n{traceback.format_exc()}")

    # -- internals: dispatch --------------------------------------------------

    def _idle(self) -> bool:
        return not self._tasks and not self._backlog

    def _drain_backlog(self) -> None:
        """Handle decoded messages while fewer than max_inflight handlers run;
        stop reading from the client while a backlog remains, so a client
        cannot make the server hold unbounded work."""
        backlog = self._backlog
        while backlog and len(self._tasks) < self._server.max_inflight:
            if self._transport is None or self._transport.is_closing():
                backlog.clear()
                return
            try:
                self._handle(backlog.popleft())
            except Exception:  # never let one message take the server down
                self._server.log(f"{self!r}: dispatch failed:\n{traceback.format_exc()}")
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if backlog and not self._paused:
            self._paused = True
            transport.pause_reading()
        elif not backlog and self._paused:
            self._paused = False
            transport.resume_reading()
        if self._eof and self._idle():
            self._close_now()

    def _handle(self, payload: dict) -> None:
        try:
            msg = Message.from_payload(payload)
        except SchemaError as exc:
            if exc.request_id is None:
                self._protocol_error(str(exc))
            else:
                self._reply(exc.request_id, error(exc.request_id, "bad-request", str(exc)))
            return
        if msg.kind == "response":
            self._server.log(f"{self!r}: unexpected response {msg.type} dropped")
            return
        if msg.kind == "request" and msg.type == "Hello" and self._server.handle_hello:
            self._hello(msg)
            return
        task = self._loop.create_task(self._run(msg))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _hello(self, msg: Message) -> None:
        version = msg.body["version"]
        self.client_name = msg.body["client"]
        self.client_version = version
        if version != PROTOCOL_VERSION:
            reply = error(
                msg,
                "unsupported-version",
                f"protocol version {version} is not supported; "
                f"this server speaks version {PROTOCOL_VERSION}",
            )
        else:
            body = {"version": PROTOCOL_VERSION, "server": self._server.server_name}
            reply = response(msg, "Hello", body)
        self._reply(msg.id, reply)

    async def _run(self, msg: Message) -> None:
        try:
            reply = await self._server.handler(self, msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._server.log(f"handler failed on {msg.type}:\n{traceback.format_exc()}")
            if msg.kind != "request":
                return
            reply = error(msg, "internal", f"{type(exc).__name__}: {exc}")
        if reply is not None:
            self._reply(msg.id, reply)

    def _reply(self, request_id: int, reply: Message) -> None:
        try:
            frame = encode_frame(reply.to_payload())
        except (SchemaError, FrameError) as exc:
            # The handler produced something unsendable (often: a response
            # over 64 KiB); tell the client instead of leaving it waiting.
            self._server.log(f"invalid {reply.type} reply to request {request_id}: {exc}")
            frame = encode_frame(
                error(
                    request_id, "internal", f"server produced an invalid reply: {exc}"
                ).to_payload()
            )
        self._send_frame(frame)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._drain_backlog()


class ControlServer:
    """Serve the control protocol on the Unix socket ``path``.

    ``handler(conn, msg)`` is awaited in its own task for every valid request
    (and event) except Hello, which the server answers itself when
    ``handle_hello`` is true; it returns the response, or None if it answered
    (or chose not to answer) itself. An exception in the handler becomes
    ``Error internal``. Handlers are not cancelled when their client
    disconnects (a half-done StartService must finish); the reply is dropped.
    """

    def __init__(
        self,
        path: str,
        handler: Handler,
        *,
        mode: int = 0o666,
        log: Log | None = None,
        server_name: str = "dynamod-svmgr",
        handle_hello: bool = True,
        max_write_buffer: int = MAX_WRITE_BUFFER,
        max_inflight: int = MAX_INFLIGHT,
    ) -> None:
        self.path = path
        self.handler = handler
        self.mode = mode
        self.log: Log = log or _stderr_log
        self.server_name = server_name
        self.handle_hello = handle_hello
        self.max_write_buffer = max_write_buffer
        self.max_inflight = max(1, max_inflight)
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[Connection] = set()
        self._ident: tuple[int, int] | None = None

    @property
    def connections(self) -> frozenset[Connection]:
        """The currently open connections."""
        return frozenset(self._connections)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (for tests and fd bookkeeping)."""
        return tuple(self._server.sockets) if self._server is not None else ()

    async def start(self) -> None:
        """Bind and listen. Creates the parent directory if needed, replaces a
        stale socket file, refuses (OSError EADDRINUSE) if another server is
        listening on ``path``, and chmods the socket to ``mode``."""
        self._loop = asyncio.get_running_loop()
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        _remove_stale_socket(self.path)
        self._server = await self._loop.create_unix_server(lambda: Connection(self), path=self.path)
        os.chmod(self.path, self.mode)
        st = os.stat(self.path)
        self._ident = (st.st_dev, st.st_ino)

    async def close(self) -> None:
        """Stop listening, close every connection, cancel handlers still
        running, and remove the socket file (if it is still ours)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        tasks: list[asyncio.Task] = []
        for conn in list(self._connections):
            tasks.extend(conn._tasks)
            conn._close_now()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # Give flushing connections a moment, then drop clients that do not read.
        deadline = self._loop.time() + 1.0
        while self._connections and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self._connections):
            conn._abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._ident:
                os.unlink(self.path)
        except OSError:
            pass

    def broadcast(self, msg: Message, *, subscribed_only: bool = True) -> int:
        """Send ``msg`` to every (subscribed) connection, encoding it once.
        Call from the loop's thread. Returns how many connections it was sent to."""
        frame = encode_frame(msg.to_payload())
        count = 0
        for conn in list(self._connections):
            if conn.closed or (subscribed_only and not conn.subscribed):
                continue
            conn._write(frame)
            count += 1
        return count

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _remove_stale_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listening: left over from a dead server
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another server is listening on {path}")
