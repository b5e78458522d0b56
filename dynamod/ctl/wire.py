"""dynamodctl's connection to the control socket.

This is not :class:`dynamod.ipc.client.Client`: that one validates every
message with :mod:`dynamod.ipc.schema`, whose imports (dataclasses, inspect)
cost more than everything else ``dynamodctl status`` does. dynamodctl only
needs to build a handful of well-known requests and read responses
defensively, so it speaks the framing directly (``struct`` + ``msgpack``)
and checks only what it uses. Failures become :class:`CtlError` with the
exit code the user sees.
"""

from __future__ import annotations

# _socket is the C module under `socket`: socket.py adds nothing dynamodctl
# uses (makefile, sendfile, enum-typed constants) and its imports (enum,
# selectors, array) cost ~8 ms of CPU on every command.
import _socket
import errno
import os

from dynamod.ctl.exits import FAILED, FROM_REMOTE, NO_DAEMON, PERMISSION, CtlError
from dynamod.ipc.framing import FrameDecoder, FrameError, encode_frame

# Same default as dynamod.ipc.client (not imported, see above).
DEFAULT_SOCKET = "/run/dynamod/control.sock"
READ_TIMEOUT = 30.0  # a read-only request that takes longer means a hung daemon
_RECV_SIZE = 256 * 1024


def socket_path(explicit: str | None = None) -> str:
    """``--socket``, else ``$DYNAMOD_SOCKET`` (if non-empty), else the default."""
    return explicit or os.environ.get("DYNAMOD_SOCKET") or DEFAULT_SOCKET


class Conn:
    """One connection; requests may be pipelined (:meth:`send` several, then
    :meth:`recv` each). Use as a context manager."""

    def __init__(self, path: str, timeout: float | None = READ_TIMEOUT) -> None:
        self.path = path
        self._next_id = 1
        self._decoder = FrameDecoder()
        self._responses: dict[int, dict] = {}
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise _connect_error(path, exc) from None
        self._sock = sock

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def send(self, type: str, body: dict | None = None) -> int:
        """Send a request; return its id for :meth:`recv`."""
        rid = self._next_id
        self._next_id += 1
        frame = encode_frame({"id": rid, "kind": "request", "type": type, "body": body or {}})
        try:
            self._sock.sendall(frame)
        except OSError as exc:
            raise CtlError(FAILED, f"connection to {self.path} lost: {_reason(exc)}") from None
        return rid

    def recv(self, rid: int, expect: str) -> dict:
        """The body of the response to request ``rid``, which must be of type
        ``expect``; an Error response raises CtlError with its exit code."""
        while rid not in self._responses:
            self._read()
        msg = self._responses.pop(rid)
        body = msg.get("body")
        if not isinstance(body, dict):
            raise CtlError(FAILED, f"invalid {msg.get('type')} response from {self.path}")
        if msg.get("type") == "Error":
            raise remote_error(body)
        if msg.get("type") != expect:
            raise CtlError(
                FAILED, f"unexpected {msg.get('type')} response from {self.path} (wanted {expect})"
            )
        return body

    def request(self, type: str, expect: str, body: dict | None = None) -> dict:
        return self.recv(self.send(type, body), expect)

    def _read(self) -> None:
        try:
            data = self._sock.recv(_RECV_SIZE)
        except TimeoutError:
            raise CtlError(FAILED, f"no answer from {self.path} (timed out)") from None
        except OSError as exc:
            raise CtlError(FAILED, f"connection to {self.path} lost: {_reason(exc)}") from None
        if not data:
            raise CtlError(FAILED, f"{self.path}: the daemon closed the connection")
        try:
            payloads = self._decoder.feed(data)
        except FrameError as exc:
            raise CtlError(FAILED, f"{self.path}: bad frame from the daemon: {exc}") from None
        for p in payloads:
            # Events (none are subscribed to) and stale responses are dropped.
            if p.get("kind") == "response" and isinstance(p.get("re"), int):
                self._responses[p["re"]] = p


def remote_error(body: dict) -> CtlError:
    code = body.get("code")
    message = body.get("message")
    details = body.get("details")
    err = CtlError(
        FROM_REMOTE.get(code, FAILED) if isinstance(code, str) else FAILED,
        message if isinstance(message, str) else f"error {code!r}",
        [d for d in details if isinstance(d, str)] if isinstance(details, list) else None,
    )
    err.body = body
    return err


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _connect_error(path: str, exc: OSError) -> CtlError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        # The socket file (or a directory on its path) is not ours to use:
        # the same answer as the daemon refusing a request.
        return CtlError(PERMISSION, f"cannot connect to {path}: {_reason(exc)}")
    reason = "timed out" if isinstance(exc, TimeoutError) else _reason(exc)
    return CtlError(
        NO_DAEMON,
        f"cannot connect to {path}: {reason} (is dynamod-svmgr running? "
        "use --socket PATH or set DYNAMOD_SOCKET for another socket)",
    )
