"""User namespaces: writing the uid/gid maps from the manager.

``unshare --map-users`` needs newuidmap(1) (not installed everywhere), and
``--map-root-user`` maps only the caller's own id, so the service's root
would stay the host's root. Instead the manager, which is root in the
parent namespace, writes ``/proc/PID/uid_map`` and ``gid_map`` itself:

* the setup shell that runs first inside the new namespaces writes ``up``
  to a FIFO and waits for ``go`` on a second one;
* the manager (watching the first FIFO on its loop) writes the maps of the
  spawned PID, which is in the new user namespace (unshare unshares itself
  before it forks or execs), then writes ``go``;
* the shell execs ``setpriv``, which makes the process the namespace's
  root (its ids were unmapped until then), and the chain goes on (mounts,
  hostname, the service).

FIFOs rather than inherited pipes: dash (Debian's /bin/sh) only parses
descriptors 0-9 in redirections and cannot close inherited ones, so a pipe
would leak into the service. The manager opens both FIFOs read-write, so no
``open`` ever blocks and a message survives until its reader comes; it
writes ``fail`` instead of ``go`` when the maps cannot be written (the
shell then exits with an error, which fails the start).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import Callable

from dynamod_isolation.options import IdRange


class Handshake:
    def __init__(self, directory: str, name: str, uid_map: tuple[IdRange, ...],
                 gid_map: tuple[IdRange, ...]) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.up_path = os.path.join(directory, f"{name}.userns-up")
        self.go_path = os.path.join(directory, f"{name}.userns-go")
        self.uid_map = uid_map
        self.gid_map = gid_map
        self.up_fd = self.go_fd = -1
        self.loop: asyncio.AbstractEventLoop | None = None
        self.done = False
        for path in (self.up_path, self.go_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.mkfifo(path, 0o600)
        flags = os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC
        self.up_fd = os.open(self.up_path, flags)
        self.go_fd = os.open(self.go_path, flags)

    def script(self) -> str:
        """Shell lines for the start of the setup script."""
        up, go = shlex.quote(self.up_path), shlex.quote(self.go_path)
        return (
            f"echo up > {up} && read -r x < {go} && [ \"$x\" = go ] || "
            "{ echo 'dynamod-isolation: the user namespace maps were not written' >&2; exit 1; }"
        )

    def start(self, pid: int, on_error: Callable[[str], None]) -> None:
        """The service was spawned as ``pid``: answer its ``up``."""
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (in-process use): answer when asked
            self.loop = None
            return
        self.loop.add_reader(self.up_fd, self._answer, pid, on_error)

    def _answer(self, pid: int, on_error: Callable[[str], None]) -> None:
        try:
            data = os.read(self.up_fd, 64)
        except BlockingIOError:
            return
        if b"up" not in data or self.done:
            return
        self.done = True
        if self.loop is not None:
            self.loop.remove_reader(self.up_fd)
        self.answer(pid, on_error)

    def answer(self, pid: int, on_error: Callable[[str], None]) -> None:
        reply = b"go\n"
        try:
            for file, ranges in (("uid_map", self.uid_map), ("gid_map", self.gid_map)):
                text = "".join(r.line() + "\n" for r in ranges)
                # The kernel takes a map in a single write(2) only.
                fd = os.open(f"/proc/{pid}/{file}", os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, text.encode())
                finally:
                    os.close(fd)
        except OSError as exc:
            on_error(f"cannot write the user namespace maps of PID {pid}: {exc.strerror or exc}")
            reply = b"fail\n"
        with contextlib.suppress(OSError):
            os.write(self.go_fd, reply)

    def close(self) -> None:
        """After the service stopped: the FIFOs are no longer needed (the
        manager keeps ``go`` open until then, or an unread reply would
        vanish with the last descriptor)."""
        if self.loop is not None and not self.done and self.up_fd >= 0:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.up_fd)
        for fd in (self.up_fd, self.go_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.up_fd = self.go_fd = -1
        for path in (self.up_path, self.go_path):
            with contextlib.suppress(OSError):
                os.unlink(path)
