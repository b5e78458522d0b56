"""Peer-to-peer D-Bus: serving objects on a unix socket without a bus
daemon (what root's ``systemctl`` tries first at /run/systemd/private).

A peer connection speaks the D-Bus wire protocol directly: the server side
of the SASL EXTERNAL handshake, then messages with no Hello, no bus names
and no destinations. Each accepted connection is a dbus-fast MessageBus
driven from the accepted socket, attached to an
:class:`~dynamod_mimic_common.server.ObjectServer` with the peer's
SO_PEERCRED credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import uuid
from collections.abc import Callable

from dbus_fast.aio import MessageBus
from dbus_fast.aio.message_reader import build_message_reader

from .server import ObjectServer
from .writer import SafeWriter

log = logging.getLogger("dynamod.mimic.peer")

_MAX_LINE = 16384
_AUTH_TIMEOUT = 10.0
_CRED = struct.Struct("3i")


class HandshakeError(Exception):
    """A client did not complete the SASL handshake correctly."""


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process on the other end of ``sock``."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    return _CRED.unpack(raw)


async def _read_line(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    # Peek and then consume exactly one line: clients pipeline BEGIN and
    # their first message, and those message bytes must stay in the socket
    # for the message reader.
    while True:
        await _readable(loop, sock)
        data = sock.recv(_MAX_LINE, socket.MSG_PEEK)
        if not data:
            raise HandshakeError("connection closed during authentication")
        end = data.find(b"\r\n")
        if end >= 0:
            return sock.recv(end + 2)[:-2]
        if len(data) >= _MAX_LINE:
            raise HandshakeError("authentication line too long")
        await asyncio.sleep(0.001)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())


async def server_handshake(sock: socket.socket, uid: int, guid: str) -> bool:
    """Run the server side of SASL EXTERNAL on ``sock``; return whether the
    client negotiated unix fd passing. The identity the client claims must be
    its SO_PEERCRED uid (or empty, which means exactly that)."""
    loop = asyncio.get_running_loop()
    await _readable(loop, sock)
    if sock.recv(1) != b"\0":
        raise HandshakeError("no leading NUL byte")
    fds = False
    authed = False
    while True:
        line = (await _read_line(loop, sock)).decode("ascii", "replace")
        cmd, _, arg = line.partition(" ")
        if cmd == "AUTH":
            mech, _, initial = arg.partition(" ")
            if mech != "EXTERNAL":
                await loop.sock_sendall(sock, b"REJECTED EXTERNAL\r\n")
                continue
            if not initial:
                await loop.sock_sendall(sock, b"DATA\r\n")
                reply = (await _read_line(loop, sock)).decode("ascii", "replace")
                rcmd, _, initial = reply.partition(" ")
                if rcmd != "DATA":
                    await loop.sock_sendall(sock, b"REJECTED EXTERNAL\r\n")
                    continue
            claimed = bytes.fromhex(initial).decode() if initial else ""
            if claimed and claimed != str(uid):
                await loop.sock_sendall(sock, b"REJECTED EXTERNAL\r\n")
                continue
            authed = True
            await loop.sock_sendall(sock, f"OK {guid}\r\n".encode())
        elif cmd == "NEGOTIATE_UNIX_FD" and authed:
            fds = True
            await loop.sock_sendall(sock, b"AGREE_UNIX_FD\r\n")
        elif cmd == "BEGIN" and authed:
            return fds
        elif cmd == "CANCEL":
            authed = False
            await loop.sock_sendall(sock, b"REJECTED EXTERNAL\r\n")
        else:
            await loop.sock_sendall(sock, b"ERROR\r\n")


class PeerConnection(MessageBus):
    """A dbus-fast MessageBus over an accepted, authenticated socket."""

    def __init__(self, sock: socket.socket, negotiate_unix_fd: bool) -> None:
        super().__init__(bus_address="unix:path=/nonexistent", negotiate_unix_fd=negotiate_unix_fd)
        self._sock = sock
        self._stream = sock.makefile("rwb")
        self._fd = sock.fileno()
        # The writer only flushes once a unique name is known (a bus assigns
        # one in Hello); a peer connection has none, so it gets a placeholder.
        self.unique_name = ":peer"
        self._writer = SafeWriter(self)
        self._loop.add_reader(self._fd, build_message_reader(
            self._sock, self._process_message, self._finalize, negotiate_unix_fd))


async def connect_peer(path: str) -> PeerConnection:
    """The client side: a peer connection to a server listening on
    ``path`` (no Hello; calls need no destination)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, path)
        uid = str(os.getuid()).encode().hex()
        await loop.sock_sendall(sock, f"\0AUTH EXTERNAL {uid}\r\n".encode())
        if not (await _read_line(loop, sock)).startswith(b"OK "):
            raise HandshakeError(f"{path} refused EXTERNAL authentication")
        await loop.sock_sendall(sock, b"NEGOTIATE_UNIX_FD\r\n")
        fds = await _read_line(loop, sock) == b"AGREE_UNIX_FD"
        await loop.sock_sendall(sock, b"BEGIN\r\n")
    except BaseException:
        sock.close()
        raise
    return PeerConnection(sock, fds)


class PeerServer:
    """Listen on ``path`` and serve ``server``'s objects to every peer that
    ``allow(uid)`` accepts (others are closed before the handshake)."""

    def __init__(self, server: ObjectServer, path: str,
                 allow: Callable[[int], bool] = lambda uid: True) -> None:
        self.server = server
        self.path = path
        self.allow = allow
        self.guid = uuid.uuid4().hex
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._conns: set[PeerConnection] = set()
        self._serving: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.bind(self.path)
        os.chmod(self.path, 0o666)
        sock.listen(64)
        sock.setblocking(False)
        self._listener = sock
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            conn, _ = await loop.sock_accept(self._listener)
            task = loop.create_task(self._serve(conn))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _serve(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            pid, uid, _gid = peer_credentials(sock)
            if not self.allow(uid):
                log.info("peer connection from uid %d refused", uid)
                sock.close()
                return
            fds = await asyncio.wait_for(server_handshake(sock, uid, self.guid), _AUTH_TIMEOUT)
        except (HandshakeError, OSError, TimeoutError) as exc:
            log.info("peer connection dropped during authentication: %s", exc)
            sock.close()
            return
        conn = PeerConnection(sock, fds)
        self._conns.add(conn)
        self.server.attach(conn, peer_uid=uid, peer_pid=pid)
        try:
            await conn.wait_for_disconnect()
        except Exception:
            pass
        finally:
            self.server.detach(conn)
            self._conns.discard(conn)

    async def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        for conn in list(self._conns):
            conn.disconnect()
