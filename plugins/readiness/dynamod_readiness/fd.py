"""Readiness type ``fd``: the s6 / Dinit convention.

The service finds the write end of a pipe at descriptor ``fd`` (default 3,
also announced in ``DYNAMOD_READY_FD``) and writes a line when it is ready;
anything written counts once a newline arrives or the pipe is closed after
it. A pipe closed with nothing written is a failure. The manager closes its
read end once the service is ready (as s6-supervise does), so a service
writes once and then closes its descriptor.

Placing the pipe at exactly ``fd`` in the child: ``SpawnSpec.pass_fds``
keeps a descriptor at its number in the manager, which is whatever the
kernel handed out. ``dup2`` onto ``fd`` inside the manager would clobber
the manager's own descriptor of that number (3 is always in use there), and
a shell wrapper cannot do it either: dash, Debian's /bin/sh, only parses
single-digit descriptors in redirections. So a tiny exec shim, the
manager's own interpreter in isolated mode (``-I -S``, no site, about
10 ms), runs first in the child: ``dup2(M, fd)``, ``close(M)``, exec the
rest. It is put in front of every other wrapper, so it still runs as the
manager's user (who can read its interpreter) and before any privilege
drop or namespace wrapper, all of which keep descriptors across exec.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from dynamod.api import ReadinessFailed, ServiceContext, SpawnSpec
from dynamod_readiness.options import DEFAULT_FD

ENV = "DYNAMOD_READY_FD"

# argv: shim N M PROGRAM ARGS...; PROGRAM is absolute (the host resolved it
# or it is a wrapper found on PATH by its plugin).
SHIM = (
    "import os,sys\n"
    "n,m=int(sys.argv[1]),int(sys.argv[2])\n"
    "if n!=m:\n"
    " os.dup2(m,n)\n"
    " os.close(m)\n"
    "try:\n"
    " os.execv(sys.argv[3],sys.argv[3:])\n"
    "except OSError as e:\n"
    " sys.stderr.write(f'dynamod fd shim: cannot execute {sys.argv[3]}: {e.strerror}\\n')\n"
    " sys.exit(127)\n"
)


def shim_wrapper(target: int, source: int) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", SHIM, str(target), str(source)]


class FdDetector:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.fd: int = ctx.config.readiness.options.get("fd", DEFAULT_FD)
        self.r = -1
        self.w = -1
        self.data = b""

    def prepare(self, spec: SpawnSpec) -> None:
        # Both ends close-on-exec in the manager: pass_fds makes only this
        # child inherit the write end, no other service spawned meanwhile.
        self.r, self.w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        os.set_blocking(self.w, True)  # the service's end behaves normally
        spec.pass_fds.append(self.w)
        spec.wrapper[:0] = shim_wrapper(self.fd, self.w)
        spec.env[ENV] = str(self.fd)

    async def wait(self) -> None:
        # The child has its copy now; ours must go or EOF would never come.
        self._close_write_end()
        loop = asyncio.get_running_loop()
        result: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self.r, self._readable, result)
        try:
            await result
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(self.r)
            # Ready or failed, we read no further (s6 closes its end too).
            self._close_read_end()

    def _readable(self, result: asyncio.Future[None]) -> None:
        if result.done():
            return
        try:
            chunk = os.read(self.r, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            result.set_exception(ReadinessFailed(f"readiness fd {self.fd}: {exc.strerror}"))
            return
        if chunk:
            self.data = (self.data + chunk)[-4096:]  # only "anything yet?" matters
            if b"\n" in chunk:
                result.set_result(None)
        elif self.data:
            result.set_result(None)  # a line without its newline, then close
        else:
            result.set_exception(
                ReadinessFailed(
                    f"readiness fd {self.fd} was closed before the service wrote a line"
                )
            )

    def _close_write_end(self) -> None:
        if self.w >= 0:
            os.close(self.w)
            self.w = -1

    def _close_read_end(self) -> None:
        if self.r >= 0:
            os.close(self.r)
            self.r = -1

    def close(self) -> None:
        self._close_write_end()
        self._close_read_end()
