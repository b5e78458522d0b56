"""A message writer that survives a full socket buffer.

dbus-fast 5.2's asyncio writer treats EAGAIN from ``send()`` as a fatal
error and drops the connection: a service answering a burst of calls (60
clients x 20 calls in the layer's tests) lost its bus connection, and so its
name. This writer waits for the socket to become writable instead. It is
installed on every connection the layer makes or accepts.
"""

from __future__ import annotations

import array
import socket
from typing import Any

from dbus_fast.aio.message_bus import _MessageWriter


class SafeWriter(_MessageWriter):
    """``_MessageWriter`` whose write loop retries on EAGAIN/EINTR."""

    def write_callback(self, remove_writer: bool = True) -> None:
        try:
            while True:
                if self.buf is None:
                    if not self.messages:
                        if remove_writer:
                            self.loop.remove_writer(self.fd)
                        return
                    data, self.unix_fds, self.fut = self.messages.popleft()
                    self.buf = memoryview(data)
                    self.offset = 0
                try:
                    rest = self.buf[self.offset:]
                    if self.unix_fds and self.negotiate_unix_fd:
                        fds = array.array("i", self.unix_fds)
                        sent = self.sock.sendmsg([rest], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                        self.unix_fds = None
                    else:
                        sent = self.sock.send(rest)
                except (BlockingIOError, InterruptedError):
                    self.loop.add_writer(self.fd, self.write_callback)
                    return
                self.offset += sent
                if self.offset < len(self.buf):
                    self.loop.add_writer(self.fd, self.write_callback)
                    return
                self.buf = None
                if self.fut is not None and not self.fut.done():
                    self.fut.set_result(None)
        except Exception as exc:
            fut = self.fut
            if fut is not None and not fut.done():
                if self.bus._user_disconnect:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)
            self.bus._finalize(exc)


def install(bus: Any) -> None:
    """Replace ``bus``'s writer by a SafeWriter, keeping queued messages."""
    old = bus._writer
    new = SafeWriter(bus)
    if old is not None:
        if old.buf is not None or old.messages:
            bus._loop.remove_writer(bus._fd)
        new.messages = old.messages
        new.buf, new.offset, new.unix_fds, new.fut = old.buf, old.offset, old.unix_fds, old.fut
    bus._writer = new
    if new.buf is not None or new.messages:
        bus._loop.add_writer(bus._fd, new.write_callback)
