"""Descriptors passed with a message (SCM_RIGHTS) on a SOCK_SEQPACKET link.

Used by svmgr and dynamod-logd to hand service pipes to each other
(docs/logd.md): one framed message per packet, its descriptors attached.
"""

from __future__ import annotations

import array
import os
import socket
from collections.abc import Callable

from dynamod.ipc.framing import FrameDecoder, FrameError
from dynamod.ipc.schema import Message, SchemaError

FDS_PER_MESSAGE = 200  # below the kernel's SCM_MAX_FD (253)
MAX_PACKET = 70 * 1024  # one frame: the 64 KiB payload and its header


def recv_with_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One packet and the descriptors it carries, close-on-exec."""
    size = socket.CMSG_SPACE(FDS_PER_MESSAGE * 4)
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_PACKET, size, socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
            fds.extend(arr)
    return data, fds


def send_with_fds(sock: socket.socket, frame: bytes, fds: list[int]) -> None:
    """One packet; raises BlockingIOError when the socket is full."""
    if fds:
        sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.send(frame)


def receive(sock: socket.socket, log: Callable[[str], None]) -> tuple[list[Message], list[int]] | None:
    """The messages of one packet and its descriptors; None when the peer
    closed the link. A bad packet is logged and its descriptors closed."""
    try:
        data, fds = recv_with_fds(sock)
    except BlockingIOError:
        return [], []
    except OSError:
        data, fds = b"", []
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    try:
        return [Message.from_payload(p) for p in FrameDecoder().feed(data)], fds
    except (FrameError, SchemaError) as exc:
        log(f"bad message: {exc}")
        for fd in fds:
            os.close(fd)
        return [], []
