"""Running a helper program (blkid, mdev) from PID 1 in the initramfs with
``posix_spawn``: no ``subprocess`` import (tens of milliseconds under TCG),
a bounded wait, and no signal dispositions leaking into the child."""

from __future__ import annotations

import os
import select
import signal
import time

RESET = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT,
         signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def find(name: str, path: str = "/usr/sbin:/usr/bin:/sbin:/bin") -> str | None:
    for d in path.split(":"):
        cand = os.path.join(d, name)
        if os.access(cand, os.X_OK):
            return cand
    return None


def run(argv: list[str], timeout: float = 10.0) -> tuple[int | None, str]:
    """Run ``argv`` with stdin /dev/null, stderr discarded; returns (exit
    status or None when killed at the timeout, stdout)."""
    r, w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        pid = os.posix_spawn(argv[0], argv, dict(os.environ), setsigdef=RESET, setsigmask=(),
                             file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, w, 1),
                                           (os.POSIX_SPAWN_DUP2, devnull, 2)])
    except OSError:
        os.close(r)
        return None, ""
    finally:
        os.close(w)
        os.close(devnull)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            out += chunk
    finally:
        os.close(r)
    status: int | None = None
    while True:
        try:
            got, st = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            break
        if got:
            status = os.waitstatus_to_exitcode(st)
            break
        if time.monotonic() >= deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    return status, out.decode("utf-8", "replace")
