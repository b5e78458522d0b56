"""Blocking control-socket client, for dynamodctl and scripts.

Deliberately plain ``socket`` and no asyncio: dynamodctl is run by hand and by
scripts, so its start-up time is user-visible. Daemons use
:mod:`dynamod.ipc.aclient` instead. Not thread-safe: one thread per Client.
"""

from __future__ import annotations

import errno as _errno
import itertools
import os
import socket
import time
from collections import deque

from dynamod.ipc.framing import FrameDecoder, FrameError, encode_frame
from dynamod.ipc.schema import PROTOCOL_VERSION, Message, SchemaError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_SOCKET = "/run/dynamod/control.sock"
_RECV_SIZE = 256 * 1024


def default_socket_path() -> str:
    """``$DYNAMOD_SOCKET`` if set and non-empty, else /run/dynamod/control.sock."""
    return os.environ.get("DYNAMOD_SOCKET") or DEFAULT_SOCKET


def trusted_socket_path(path: str) -> str:
    """The twin of control socket ``path`` that only root and the server's
    own user can connect to (``control.sock`` -> ``control.root.sock``):
    other users' connections, however many, never queue in front of theirs
    (docs/protocol.md, "Client limits")."""
    return path[: -len(".sock")] + ".root.sock" if path.endswith(".sock") else path + ".root"


def socket_candidates(path: str) -> list[str]:
    """Where a client connects, in order: the trusted twin first when it
    exists and this process may use it (root, or the user owning it)."""
    twin = trusted_socket_path(path)
    try:
        owner = os.stat(twin).st_uid
    except OSError:
        return [path]
    euid = os.geteuid()
    return [twin, path] if euid in (0, owner) else [path]


def connect_unix(path: str, timeout: float | None) -> socket.socket:
    """Connect, waiting (up to ``timeout``) while the server's listen queue
    is full: on AF_UNIX a connect with a timeout fails with EAGAIN at once
    instead of waiting for room."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.002
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            if deadline is not None and time.monotonic() + pause > deadline:
                raise TimeoutError(_errno.ETIMEDOUT, "the server's listen queue stayed full") from None
        except BaseException:
            sock.close()
            raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class ConnectError(OSError):
    """The control socket could not be reached. ``path`` and ``reason`` say
    which socket and why; ``errno`` is the underlying error number."""

    def __init__(self, path: str, reason: str, errno: int | None = None) -> None:
        hint = ""
        if errno in (_errno.ENOENT, _errno.ECONNREFUSED):  # nobody is listening
            hint = " (is dynamod-svmgr running? set DYNAMOD_SOCKET to use another socket)"
        super().__init__(f"cannot connect to {path}: {reason}{hint}")
        self.errno = errno
        self.path = path
        self.reason = reason


class ProtocolError(Exception):
    """The server closed the connection or sent something that is not a valid
    message; the connection is unusable."""


class RemoteError(Exception):
    """The server answered with an Error response."""

    def __init__(self, code: str, message: str, details: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = list(details or [])


def raise_for_error(msg: Message) -> Message:
    """Raise RemoteError if ``msg`` is an Error response, else return it."""
    if msg.kind == "response" and msg.type == "Error":
        body = msg.body
        raise RemoteError(body["code"], body["message"], body.get("details"))
    return msg


def parse_server_message(payload: dict) -> Message | None:
    """Build a message from a server payload; None for an event this client
    does not know (a newer server may send more kinds of events)."""
    try:
        return Message.from_payload(payload)
    except SchemaError as exc:
        if payload.get("kind") == "event":
            return None
        raise ProtocolError(f"invalid message from server: {exc}") from exc


class Client:
    """A connection to a dynamod control socket.

    ``timeout`` bounds connecting and each wait for a response (None: wait
    forever). Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | None = None, timeout: float | None = 30.0) -> None:
        self.path = path or default_socket_path()
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._decoder = FrameDecoder()
        self._events: deque[Message] = deque()
        self._pending: deque[dict] = deque()  # decoded payloads not yet looked at
        *twin, public = socket_candidates(self.path)
        sock = None
        if twin:
            try:
                sock = connect_unix(twin[0], timeout)
                self.path = twin[0]
            except OSError:
                sock = None  # an old server without it, or not ours: the public one
        if sock is None:
            try:
                sock = connect_unix(public, timeout)
            except OSError as exc:
                reason = exc.strerror or str(exc) or type(exc).__name__
                if isinstance(exc, TimeoutError):
                    reason = f"timed out after {timeout}s"
                raise ConnectError(self.path, reason, exc.errno) from exc
        self._sock: socket.socket | None = sock

    # -- public API -----------------------------------------------------------

    def request(self, type: str, body: dict | None = None) -> Message:
        """Send a request and return its response.

        Raises RemoteError for an Error response, TimeoutError if no response
        arrives within the timeout, ProtocolError if the connection breaks,
        SchemaError if the request itself is invalid (nothing is sent then).
        Events that arrive meanwhile are kept for ``events()``.
        """
        msg = Message(next(self._ids), "request", type, body or {})
        self._send(msg)
        while True:
            reply = self._next_message(self.timeout, f"{type} response")
            if reply is None:
                raise ProtocolError(f"{self.path}: server closed the connection")
            if reply.kind == "event":
                self._events.append(reply)
            elif reply.kind == "response" and reply.re == msg.id:
                return raise_for_error(reply)
            # Anything else (a late answer to an earlier, timed-out request)
            # is stale and dropped.

    def hello(self, client: str = "dynamodctl") -> int:
        """Exchange Hello; return the server's protocol version. Raises
        RemoteError("unsupported-version", ...) if the server refuses ours."""
        reply = self.request("Hello", {"version": PROTOCOL_VERSION, "client": client})
        return reply.body["version"]

    def events(self, timeout: float | None = None) -> Iterator[Message]:
        """Yield events (after a ``Subscribe`` request) as they arrive, forever.

        ``timeout`` bounds the wait for each event (None: wait forever;
        TimeoutError when exceeded). Ends when the server closes the connection.
        """
        while True:
            if self._events:
                yield self._events.popleft()
                continue
            msg = self._next_message(timeout, "event")
            if msg is None:
                return
            if msg.kind == "event":
                yield msg

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def fileno(self) -> int:
        """The socket's file descriptor, for select()/poll() over events."""
        if self._sock is None:
            raise ProtocolError("client is closed")
        return self._sock.fileno()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        if self._sock is None:
            raise ProtocolError("client is closed")
        frame = encode_frame(msg.to_payload())
        try:
            self._sock.sendall(frame)
        except OSError as exc:
            self.close()
            raise ProtocolError(f"connection to {self.path} lost: {exc}") from exc

    def _next_message(self, timeout: float | None, what: str) -> Message | None:
        """Return the next known message from the server, or None when the
        server closed the connection cleanly (between frames).

        Raises TimeoutError (``what`` names what was awaited) or ProtocolError.
        """
        while True:
            while self._pending:
                msg = parse_server_message(self._pending.popleft())
                if msg is not None:
                    return msg
            if self._sock is None:
                raise ProtocolError("client is closed")
            self._sock.settimeout(timeout)
            try:
                data = self._sock.recv(_RECV_SIZE)
            except TimeoutError:
                raise TimeoutError(f"no {what} from {self.path} within {timeout}s") from None
            except OSError as exc:
                self.close()
                raise ProtocolError(f"connection to {self.path} lost: {exc}") from exc
            if not data:
                self.close()
                if self._decoder.buffered:
                    raise ProtocolError(f"{self.path}: server closed the connection mid-frame")
                return None
            try:
                self._pending.extend(self._decoder.feed(data))
            except FrameError as exc:
                self.close()
                raise ProtocolError(f"{self.path}: bad frame from server: {exc}") from exc
