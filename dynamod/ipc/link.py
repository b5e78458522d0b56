"""The init <-> svmgr link: a ``socketpair(AF_UNIX, SOCK_SEQPACKET)``.

Each message is one frame in one datagram, so the kernel delivers it whole
or not at all: a send that does not fit fails with EAGAIN instead of sending
part of a frame (which on a stream would desynchronise the reader and lose
the frames after it). What cannot be sent at once waits in a bounded
:class:`Outbox` until the socket is writable. PID 1 imports this module: it
depends on ``socket`` and :mod:`dynamod.ipc.framing` only.
"""

from __future__ import annotations

import socket
from collections import deque

from dynamod.ipc.framing import HEADER_SIZE, MAX_PAYLOAD, FrameError, decode_frame

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

LINK_TYPE = socket.SOCK_SEQPACKET
RECV_SIZE = HEADER_SIZE + MAX_PAYLOAD
# Messages read per wakeup: the other end cannot keep the reader busy forever.
RECV_BATCH = 64
# Bytes an outbox holds at most; beyond, new messages are dropped (counted).
OUTBOX_BYTES = 1024 * 1024


def socketpair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, LINK_TYPE)


def receive(sock: socket.socket, on_message: Callable[[dict], object],
            on_error: Callable[[str], object]) -> bool:
    """Read the datagrams waiting on the non-blocking ``sock`` (up to
    RECV_BATCH), handing each decoded payload to ``on_message`` and each bad
    one's description to ``on_error``. False once the peer has gone."""
    for _ in range(RECV_BATCH):
        try:
            data, _anc, flags, _addr = sock.recvmsg(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data and not flags & socket.MSG_TRUNC:
            return False  # a SEQPACKET peer that closed reads as empty
        if flags & socket.MSG_TRUNC:
            on_error(f"message larger than {RECV_SIZE} bytes")
            continue
        try:
            payload = decode_frame(data)
        except FrameError as exc:
            on_error(str(exc))
            continue
        on_message(payload)
    return True


class Outbox:
    """Frames waiting for the socket to take them, in order, at most
    OUTBOX_BYTES; ``dropped`` counts those refused since the last flush that
    emptied it."""

    def __init__(self, limit: int = OUTBOX_BYTES) -> None:
        self.frames: deque[bytes] = deque()
        self.size = 0
        self.limit = limit
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self.frames)

    def send(self, sock: socket.socket, frame: bytes) -> None:
        """Send now if nothing waits and the socket takes it, else queue
        (or drop, when full). Raises OSError when the link is broken."""
        if not self.frames and self._try(sock, frame):
            return
        if self.size + len(frame) > self.limit:
            self.dropped += 1
            return
        self.frames.append(frame)
        self.size += len(frame)

    def flush(self, sock: socket.socket) -> bool:
        """Send what waits while the socket takes it; True once empty.
        Raises OSError when the link is broken."""
        while self.frames:
            if not self._try(sock, self.frames[0]):
                return False
            self.size -= len(self.frames.popleft())
        return True

    @staticmethod
    def _try(sock: socket.socket, frame: bytes) -> bool:
        try:
            sock.send(frame)
        except (BlockingIOError, InterruptedError):
            return False
        return True
