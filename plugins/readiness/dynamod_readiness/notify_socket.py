"""The receiving end of the sd_notify protocol: one datagram socket, read
from the service manager's event loop.

Layout: one socket per service start, ``RUNTIME/notify/NAME.sock``.

* Attribution is by credentials, never by socket: ``SO_PASSCRED`` makes the
  kernel attach the sender's (pid, uid, gid) to every datagram, including
  senders that attach none themselves. The per-service socket still means a
  message can only ever be about that one service, so one service cannot
  even try to speak for another, and an isolation plugin can bind-mount
  just that socket into a service's mount namespace.
* A fresh socket per start drops whatever an earlier run of the service
  left queued (a stale ``READY=1`` must not make a new start ready).
* The socket file is mode 0666 in a 0755 directory, so a service running as
  another user can connect; who may *act* is decided by the credentials.
* A ``sun_path`` holds at most 107 bytes. When the runtime directory is too
  deep for that, an abstract address ``@dynamod-notify/...`` is used
  instead (still checked by credentials; reachable within the manager's
  network namespace only).

Descriptors sent along (``BARRIER=1``, ``FDSTORE=1``) are closed as soon as
the datagram has been handled: the fd store is not implemented, and
``systemd-notify`` waits for its barrier pipe to be closed.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

# systemd accepts notifications up to PIPE_BUF bytes; longer ones arrive
# truncated (MSG_TRUNC) and are dropped rather than half-applied.
MAX_MESSAGE = 4096
MAX_FDS = 253  # SCM_MAX_FD: the most one datagram can carry
_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid
_ANCILLARY = socket.CMSG_SPACE(MAX_FDS * 4) + socket.CMSG_SPACE(_UCRED.size)
# A flood of datagrams must not starve the rest of the manager's loop.
_BATCH = 64
_MAX_PATH = 107


@dataclass
class NotifyMessage:
    pid: int | None  # None: no credentials (cannot happen with SO_PASSCRED)
    uid: int | None
    gid: int | None
    fields: dict[str, str] = field(default_factory=dict)
    fds: int = 0  # how many descriptors came along (already closed)
    problem: str = ""  # non-empty: the datagram was damaged and is dropped


def parse_fields(data: bytes) -> dict[str, str]:
    """``KEY=VALUE`` lines; lines without ``=`` are ignored (a newline inside
    a value is not escaped by senders). The last assignment of a key wins."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            out[key] = value
    return out


def choose_address(runtime_dir: str, name: str) -> str:
    """The ``NOTIFY_SOCKET`` value for one start of service ``name``."""
    path = os.path.join(os.path.abspath(runtime_dir), "notify", f"{name}.sock")
    if len(os.fsencode(path)) <= _MAX_PATH:
        return path
    # os.urandom, not secrets.token_hex (the same bytes): secrets imports
    # hashlib, which maps OpenSSL's libcrypto (~4 MB) into the manager.
    return f"@dynamod-notify/{os.urandom(8).hex()}/{name}"[:_MAX_PATH]


class NotifySocket:
    """A bound notify socket feeding :class:`NotifyMessage` objects to
    ``on_message`` from the loop's reader callback."""

    def __init__(
        self,
        address: str,
        on_message: Callable[[NotifyMessage], None],
        loop: asyncio.AbstractEventLoop,
        on_error: Callable[[str], None] = lambda m: None,
    ) -> None:
        self.address = address
        self.on_message = on_message
        self.on_error = on_error
        self.loop = loop
        self._inode: tuple[int, int] | None = None
        sock = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            if address.startswith("@"):
                sock.bind("\0" + address[1:])
            else:
                self._bind_path(sock, address)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        loop.add_reader(sock.fileno(), self._readable)

    def _bind_path(self, sock: socket.socket, path: str) -> None:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o755)  # the umask may have narrowed it
        # A socket file left by a crashed manager (or a start that never got
        # to close) would make bind fail with EADDRINUSE.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock.bind(path)
        os.chmod(path, 0o666)
        st = os.stat(path)
        self._inode = (st.st_dev, st.st_ino)

    @property
    def closed(self) -> bool:
        return self.sock.fileno() < 0

    def close(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self._inode is not None:
            # Only our own file: a newer start may already have bound one.
            with contextlib.suppress(OSError):
                st = os.stat(self.address)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.address)

    def _readable(self) -> None:
        for _ in range(_BATCH):
            if self.closed:  # a handler may close us (service failed)
                return
            try:
                data, ancdata, flags, _addr = self.sock.recvmsg(
                    MAX_MESSAGE, _ANCILLARY, socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.on_error(f"notify socket: receive failed: {exc}")
                return
            msg = NotifyMessage(None, None, None)
            fds: list[int] = []
            try:
                for level, kind, cdata in ancdata:
                    if level != socket.SOL_SOCKET:
                        continue
                    if kind == socket.SCM_RIGHTS:
                        arr = array.array("i")
                        arr.frombytes(cdata[: len(cdata) - len(cdata) % arr.itemsize])
                        fds.extend(arr)
                    elif kind == socket.SCM_CREDENTIALS and len(cdata) >= _UCRED.size:
                        msg.pid, msg.uid, msg.gid = _UCRED.unpack_from(cdata)
                msg.fds = len(fds)
                if flags & socket.MSG_TRUNC:
                    msg.problem = f"longer than {MAX_MESSAGE} bytes"
                elif flags & socket.MSG_CTRUNC:
                    msg.problem = f"more than {MAX_FDS} descriptors"
                else:
                    msg.fields = parse_fields(data)
                self.on_message(msg)
            except Exception as exc:  # one bad datagram must not stop reading
                self.on_error(
                    f"notify socket: handling a message failed: {type(exc).__name__}: {exc}"
                )
            finally:
                # Closed only after the message (and every earlier one) was
                # handled: that is what BARRIER=1 waits for.
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
