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
import resource
import socket
import stat
import struct
import sys
import traceback
from collections import deque
from collections.abc import Awaitable, Callable

from dynamod.ipc.client import trusted_socket_path
from dynamod.ipc.clientlog import ClientLog
from dynamod.ipc.framing import HEADER_SIZE, MAX_PAYLOAD, FrameDecoder, FrameError, encode_frame
from dynamod.ipc.schema import PROTOCOL_VERSION, Message, SchemaError, error, response

Handler = Callable[["Connection", Message], Awaitable["Message | None"]]
Log = Callable[[str], None]

MAX_WRITE_BUFFER = 1024 * 1024
# Output all connections of one untrusted uid may have pending in the server.
MAX_WRITE_BUFFER_PER_UID = 8 * 1024 * 1024
# Requests one connection may have in flight before the server stops reading
# from it: a client cannot make the server spawn unbounded tasks.
MAX_INFLIGHT = 64
# Connections of untrusted peers: per uid and in all.
MAX_CONNECTIONS_PER_UID = 64
MAX_CONNECTIONS = 512
# A connection of an untrusted peer with nothing in flight, nothing pending
# and no subscription is closed after this long without a request.
IDLE_TIMEOUT = 60.0
# ... and one that began a frame and does not finish it, or does not read
# what the server sends, within this long.
SLOW_TIMEOUT = 10.0
# Client problems are summed up per uid over this long (dynamod.ipc.clientlog).
LOG_INTERVAL = 10.0
# How often the timeouts are checked.
SWEEP_INTERVAL = 1.0
# One receive buffer, shared by every connection (the loop runs one callback
# at a time): a read never takes more than this.
RECV_SIZE = MAX_PAYLOAD + HEADER_SIZE
ACCEPTS_PER_WAKEUP = 64
LISTEN_BACKLOG = 4096
_CRED = struct.Struct("3i")
_SUN_PATH_MAX = 108  # sockaddr_un.sun_path, the terminating NUL included


def _env_seconds(name: str, default: float) -> float:
    """A timeout knob for tests (the defaults are minutes for humans)."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def _stderr_log(message: str) -> None:
    print(f"dynamod-ipc: {message}", file=sys.stderr, flush=True)


class Connection(asyncio.BufferedProtocol):
    """One accepted client.

    Public attributes: ``peer_pid``, ``peer_uid``, ``peer_gid`` (SO_PEERCRED,
    taken when the connection is accepted), ``trusted`` (root or the server's
    own uid: exempt from the per-uid limits), ``closed``, ``subscribed`` (set
    by the handler; used by :meth:`ControlServer.broadcast`), ``client_name``
    and ``client_version`` (from Hello, None before), and ``on_close``:
    callables run with this connection once it is closed.
    """

    def __init__(self, server: ControlServer, creds: tuple[int, int, int] = (0, -1, -1)) -> None:
        self._server = server
        self._loop = server._loop
        self._transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder()
        self._tasks: set[asyncio.Task] = set()
        self._backlog: deque[dict] = deque()  # decoded, waiting for a handler slot
        self._paused = False
        self._eof = False
        now = server._loop.time()
        self._last_active = now  # last request or reply: for the idle timeout
        self._frame_since: float | None = None  # a partial frame waits since
        self._more = False  # the decoder may hold complete frames not decoded yet
        self._write_size = 0  # output pending at the last sweep ...
        self._write_since = now  # ... and since when it has not shrunk
        self.peer_pid, self.peer_uid, self.peer_gid = creds
        self.trusted = server.trusts(self.peer_uid)
        self._uncounted = False
        self.closed = False
        self.subscribed = False
        self.client_name: str | None = None
        self.client_version: int | None = None
        self.on_close: list[Callable[[Connection], object]] = []

    def __repr__(self) -> str:
        return f"<Connection pid={self.peer_pid} uid={self.peer_uid} closed={self.closed}>"

    def describe(self) -> str:
        name = f" {self.client_name}" if self.client_name else ""
        return f"client{name} (pid {self.peer_pid}, uid {self.peer_uid})"

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
        self._last_active = self._loop.time()
        size = transport.get_write_buffer_size()
        server = self._server
        if size > server.max_write_buffer:
            # A client that stops reading (typically a stuck subscriber) must
            # not make the manager buffer without bound.
            server.client_problem(self, "not reading", f"not reading, {size} bytes pending; disconnecting")
            self._abort()
        elif not self.trusted and size > server.max_write_buffer // 4:
            total = server.pending_output(self.peer_uid)
            if total > server.max_write_buffer_per_uid:
                server.client_problem(self, "not reading", f"not reading: its uid's connections have "
                                      f"{total} bytes pending; disconnecting this one ({size})")
                self._abort()

    def _close_now(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _protocol_error(self, problem: str) -> None:
        # Counted under its leading words ("bad magic", "frame length"...),
        # without the bytes that differ from frame to frame.
        words = []
        for word in problem.split():
            if not word.isalpha():
                break
            words.append(word)
        kind = " ".join(words)[:40] or "protocol error"
        self._server.client_problem(self, kind, f"protocol error, closing: {problem}")
        self._abort()

    def sweep(self, now: float) -> None:
        """Close the connection if a timeout ran out (untrusted peers only)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        server = self._server
        size = transport.get_write_buffer_size()
        if size == 0 or size < self._write_size:
            self._write_since = now
        self._write_size = size
        if self.trusted:
            return
        if (self._frame_since is not None and not self._more
                and now - self._frame_since > server.slow_timeout):
            server.client_problem(self, "slow", f"began a frame and did not finish it within "
                                  f"{server.slow_timeout:g}s; disconnecting")
            self._abort()
        elif size and now - self._write_since > server.slow_timeout:
            server.client_problem(self, "slow", f"read nothing of {size} pending bytes within "
                                  f"{server.slow_timeout:g}s; disconnecting")
            self._abort()
        elif (not self.subscribed and self._idle() and not self._decoder.buffered and not size
              and now - self._last_active > server.idle_timeout):
            server.client_problem(self, "idle", f"idle for {server.idle_timeout:g}s; disconnecting")
            self._close_now()

    # -- asyncio.BufferedProtocol ---------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server._recv_view

    def buffer_updated(self, nbytes: int) -> None:
        self._feed(bytes(self._server._recv_view[:nbytes]))

    def _feed(self, data: bytes) -> None:
        """Decode only as many frames as there are free handler slots: the
        rest stays raw in the decoder (at most one read's worth) while reading
        is paused, so a client cannot make the server hold decoded messages
        without bound."""
        decoder = self._decoder
        slots = self._server.max_inflight - len(self._tasks) - len(self._backlog)
        try:
            payloads = decoder.feed(data, max(0, slots))
        except FrameError as exc:
            self._protocol_error(str(exc))
            return
        self._more = len(payloads) >= slots and decoder.buffered > 0
        now = self._loop.time()
        if payloads:
            self._last_active = now
            self._frame_since = None
        if decoder.buffered and self._frame_since is None:
            self._frame_since = now
        elif not decoder.buffered:
            self._frame_since = None
        self._backlog.extend(payloads)
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
        self._server._remove(self)
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
        inflight, limit = len(self._tasks), self._server.max_inflight
        if self._more and not backlog and inflight < limit:
            # Frames left undecoded for want of a slot: decode them now.
            self._feed(b"")
            return
        # Full means: a frame may wait for a slot (decoded or still raw).
        full = bool(backlog) or self._more or inflight >= limit
        if full and not self._paused:
            self._paused = True
            transport.pause_reading()
        elif not full and self._paused:
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
            self._server.client_problem(self, "unexpected response",
                                        f"unexpected response {msg.type} dropped")
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

    The keyword limits are those of docs/protocol.md ("Client limits");
    ``fd_reserve`` (default: a quarter of RLIMIT_NOFILE, at least 64) is how
    many descriptors untrusted clients can never take.
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
        max_write_buffer_per_uid: int = MAX_WRITE_BUFFER_PER_UID,
        max_inflight: int = MAX_INFLIGHT,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_uid: int = MAX_CONNECTIONS_PER_UID,
        idle_timeout: float | None = None,
        slow_timeout: float | None = None,
        fd_reserve: int | None = None,
        log_interval: float | None = None,
        trusted_path: str | None = "",
    ) -> None:
        self.path = path
        # "": next to ``path`` (dynamod.ipc.client.trusted_socket_path); None: none.
        self.trusted_path = trusted_socket_path(path) if trusted_path == "" else trusted_path
        self.handler = handler
        self.mode = mode
        self.log: Log = log or _stderr_log
        self.server_name = server_name
        self.handle_hello = handle_hello
        self.max_write_buffer = max_write_buffer
        self.max_write_buffer_per_uid = max_write_buffer_per_uid
        self.max_inflight = max(1, max_inflight)
        self.max_connections = max_connections
        self.max_connections_per_uid = max_connections_per_uid
        env = _env_seconds
        self.idle_timeout = idle_timeout or env("DYNAMOD_CONTROL_IDLE_TIMEOUT", IDLE_TIMEOUT)
        self.slow_timeout = slow_timeout or env("DYNAMOD_CONTROL_SLOW_TIMEOUT", SLOW_TIMEOUT)
        self.fd_reserve = fd_reserve
        self.client_log = ClientLog(self.log, log_interval or env("DYNAMOD_CONTROL_LOG_INTERVAL", LOG_INTERVAL))
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._listeners: list[_Listener] = []
        self._connections: set[Connection] = set()
        self._by_uid: dict[int, set[Connection]] = {}  # untrusted connections only
        self._untrusted = 0
        self._recv_view = memoryview(bytearray(RECV_SIZE))
        self._own_uid = os.getuid()
        self._fd_limit = 1024
        self._spare: int = -1  # held to accept (and refuse) a client when out of fds
        self._fd_short = 0  # accepts that failed for want of descriptors, this episode
        self._sweeper: asyncio.TimerHandle | None = None
        self._accept_timer: asyncio.TimerHandle | None = None

    @property
    def connections(self) -> frozenset[Connection]:
        """The currently open connections."""
        return frozenset(self._connections)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets, the public one first (for tests and fd
        bookkeeping)."""
        return tuple(listener.sock for listener in self._listeners)

    def trusts(self, uid: int) -> bool:
        """Root and the server's own uid are exempt from the per-uid limits
        (they may do everything anyway)."""
        return uid == 0 or uid == self._own_uid

    async def start(self) -> None:
        """Bind and listen. Creates the parent directory if needed, replaces a
        stale socket file, refuses (OSError EADDRINUSE) if another server is
        listening on ``path``, and chmods the socket to ``mode``; the same
        for ``trusted_path`` (mode 0600: root and the server's own user)."""
        self._loop = asyncio.get_running_loop()
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        self._fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if self.fd_reserve is None:
            self.fd_reserve = max(64, self._fd_limit // 4)
        _remove_stale_socket(self.path)
        if self.trusted_path:
            _remove_stale_socket(self.trusted_path)
        self._listeners.append(_Listener.bind(self.path, self.mode, trusted_only=False))
        if self.trusted_path and len(os.fsencode(self.trusted_path)) >= _SUN_PATH_MAX:
            # The public path fits, its longer twin does not: serve without it
            # (clients fall back to the public socket).
            self.log(f"warning: {self.trusted_path} is too long for a Unix socket; "
                     "no trusted socket (root shares the public one)")
            self.trusted_path = None
        if self.trusted_path:
            try:
                self._listeners.append(_Listener.bind(self.trusted_path, 0o600, trusted_only=True))
            except BaseException:
                self._listeners.pop().close()
                raise
        self._open_spare()
        for listener in self._listeners:
            self._loop.add_reader(listener.sock.fileno(), self._accept_ready, listener)
        self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep)

    # -- accepting ------------------------------------------------------------

    def _open_spare(self) -> None:
        if self._spare < 0:
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._spare = -1

    def _accept_ready(self, listener: _Listener) -> None:
        if listener.closed:
            return
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, _addr = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._out_of_fds(exc, listener)
                else:
                    self.log(f"accept on {listener.path} failed: {exc}")
                return
            try:
                self._admit(sock, listener)
            except Exception:  # a bad connection must not stop the accepting
                sock.close()
                self.log(f"cannot set up a connection:\n{traceback.format_exc()}")

    def _out_of_fds(self, exc: OSError, listener: _Listener) -> None:
        """No descriptor for a new connection. Use the spare one to take
        the oldest pending connection off the queue: a trusted peer keeps it
        (root always gets through), anybody else is refused. Then wait a
        moment instead of spinning on a listener that stays readable."""
        if not self._fd_short:
            self.log(f"out of file descriptors ({exc.strerror}; limit {self._fd_limit}): "
                     "refusing untrusted clients until some are free (logged once)")
        self._fd_short += 1
        if self._spare >= 0:
            os.close(self._spare)
            self._spare = -1
            try:
                sock, _addr = listener.sock.accept()
            except OSError:
                sock = None
            if sock is not None:
                creds = _peer_creds(sock)
                if self.trusts(creds[1]):
                    self._start_connection(sock, creds)
                else:
                    sock.close()
            self._open_spare()
        if self._accept_timer is None:
            for each in self._listeners:
                self._loop.remove_reader(each.sock.fileno())
            self._accept_timer = self._loop.call_later(0.05, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._accept_timer = None
        for listener in self._listeners:
            if not listener.closed:
                self._loop.add_reader(listener.sock.fileno(), self._accept_ready, listener)

    def _admit(self, sock: socket.socket, listener: _Listener) -> None:
        creds = _peer_creds(sock)
        uid = creds[1]
        if not self.trusts(uid):
            refusal = None
            if listener.trusted_only:
                refusal = f"{listener.path} is for root and the server's own user only"
            mine = self._by_uid.get(uid, ())
            if refusal is not None:
                pass
            elif len(mine) >= self.max_connections_per_uid:
                refusal = f"uid {uid} has {len(mine)} connections, the most one user may have"
            elif self._untrusted >= self.max_connections:
                refusal = f"{self._untrusted} connections of other users are open, the most allowed"
            elif sock.fileno() >= self._fd_limit - (self.fd_reserve or 0):
                # Descriptors are taken lowest first: all below this one are in use.
                refusal = f"file descriptor {sock.fileno()} is in the reserve kept for root and services"
            if refusal is not None:
                self.client_log.note(uid, "connection refused",
                                     f"client (pid {creds[0]}, uid {uid}): connection refused: {refusal}")
                sock.close()
                return
        self._start_connection(sock, creds)

    def _start_connection(self, sock: socket.socket, creds: tuple[int, int, int]) -> None:
        sock.setblocking(False)
        conn = Connection(self, creds)
        # Counted from now on: the next accept of the same batch sees it.
        if not conn.trusted:
            self._by_uid.setdefault(conn.peer_uid, set()).add(conn)
            self._untrusted += 1
        # connect_accepted_socket is a coroutine; its work is synchronous
        # for a socket already connected, the task only wraps it.
        task = self._loop.create_task(self._loop.connect_accepted_socket(lambda: conn, sock))
        task.add_done_callback(lambda t: self._connect_done(t, conn, sock))

    def _connect_done(self, task: asyncio.Task, conn: Connection, sock: socket.socket) -> None:
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            sock.close()
            self._uncount(conn)
            if exc is not None:
                self.log(f"cannot set up a connection: {type(exc).__name__}: {exc}")

    def _add(self, conn: Connection) -> None:
        self._connections.add(conn)

    def _remove(self, conn: Connection) -> None:
        self._connections.discard(conn)
        self._uncount(conn)

    def _uncount(self, conn: Connection) -> None:
        if not conn.trusted and not conn._uncounted:
            conn._uncounted = True
            self._untrusted -= 1
            mine = self._by_uid.get(conn.peer_uid)
            if mine is not None:
                mine.discard(conn)
                if not mine:
                    del self._by_uid[conn.peer_uid]

    def pending_output(self, uid: int) -> int:
        """Bytes buffered for all connections of an untrusted ``uid``."""
        total = 0
        for conn in self._by_uid.get(uid, ()):
            transport = conn._transport
            if transport is not None:
                total += transport.get_write_buffer_size()
        return total

    def client_problem(self, conn: Connection, kind: str, detail: str) -> None:
        """Log a misbehaving client, rate-limited per uid."""
        self.client_log.note(conn.peer_uid, kind, f"{conn.describe()}: {detail}")

    def _sweep(self) -> None:
        self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep)
        now = self._loop.time()
        for conn in list(self._connections):
            try:
                conn.sweep(now)
            except Exception:
                self.log(f"connection sweep failed:\n{traceback.format_exc()}")
        if self._fd_short and self._accept_timer is None:
            self._open_spare()
            if self._spare >= 0:
                self.log(f"file descriptors available again ({self._fd_short} accepts had failed)")
                self._fd_short = 0

    async def close(self) -> None:
        """Stop listening, close every connection, cancel handlers still
        running, and remove the socket file (if it is still ours)."""
        listeners, self._listeners = self._listeners, []
        if not listeners:
            return
        for timer in (self._sweeper, self._accept_timer):
            if timer is not None:
                timer.cancel()
        for listener in listeners:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(listener.sock.fileno())
            listener.close()
        if self._spare >= 0:
            os.close(self._spare)
            self._spare = -1
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
        self.client_log.close()
        for listener in listeners:
            listener.unlink()

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


class _Listener:
    """One listening socket and the file it was bound to."""

    def __init__(self, sock: socket.socket, path: str, trusted_only: bool) -> None:
        self.sock = sock
        self.path = path
        self.trusted_only = trusted_only
        self.closed = False
        st = os.stat(path)
        self.ident = (st.st_dev, st.st_ino)

    @classmethod
    def bind(cls, path: str, mode: int, *, trusted_only: bool) -> _Listener:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, mode)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
            return cls(sock, path, trusted_only)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def unlink(self) -> None:
        """Remove the socket file if it is still ours."""
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self.ident:
                os.unlink(self.path)
        except OSError:
            pass


def _peer_creds(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer; an unknown peer is unprivileged (uid -1
    is never root)."""
    try:
        pid, uid, gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
        return pid, uid, gid
    except OSError:
        return 0, -1, -1


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
