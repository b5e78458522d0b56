"""The one place in the service manager that collects exit statuses.

SIGCHLD coalesces, so each signal drains every exited child. A child is
first *peeked at* with ``waitid(WNOWAIT)``: its callback runs (the engine
records the exit) and only then is it reaped. Should svmgr die in between,
the zombie goes to dynamod-init, which reaps it and hands its status to the
next svmgr: no exit is ever lost. Spawners register a callback for a PID
right after spawning (before the loop runs again, so no exit can be missed).
Exits of PIDs nobody registered (daemons of forking services that were
reparented to us as subreaper, or leftovers) are remembered for a while so
that a PID read later from a pid file can still be matched with its status.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import OrderedDict
from collections.abc import Callable

ExitCallback = Callable[[int, int], None]  # (pid, wait status)


def _wait_status(info: os.waitid_result) -> int:
    """A waitid result as the status waitpid would have returned."""
    if info.si_code == os.CLD_EXITED:
        return (info.si_status & 0xFF) << 8
    if info.si_code == os.CLD_DUMPED:
        return (info.si_status & 0x7F) | 0x80
    return info.si_status & 0x7F


def quiet_wakeup_fd() -> None:
    """A flood of SIGCHLD (thousands of services stopping at once) fills
    asyncio's signal pipe; Python then writes "Exception ignored when
    trying to write to the signal wakeup fd" into svmgr's log, in the middle
    of other lines. Nothing is lost (the reaper collects every child on each
    signal), so the warning is turned off. Call after the last
    ``add_signal_handler`` (each one installs the fd afresh)."""
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        signal.set_wakeup_fd(fd, warn_on_full_buffer=False)


class Reaper:
    KEEP_UNKNOWN = 4096

    def __init__(self, on_error: Callable[[str], None] | None = None) -> None:
        self._watch: dict[int, ExitCallback] = {}
        self.unknown: OrderedDict[int, int] = OrderedDict()
        self._on_error = on_error or (lambda m: None)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        # Children that exited before the handler existed.
        loop.call_soon(self.reap)

    def watch(self, pid: int, callback: ExitCallback) -> bool:
        """Call ``callback(pid, status)`` when ``pid`` exits. If it already
        exited (and was reaped as unknown), call it now and return False."""
        status = self.unknown.pop(pid, None)
        if status is not None:
            callback(pid, status)
            return False
        self._watch[pid] = callback
        return True

    def unwatch(self, pid: int) -> None:
        self._watch.pop(pid, None)

    def watching(self, pid: int) -> bool:
        """Whether an exit callback for ``pid`` is still pending."""
        return pid in self._watch

    def reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if info is None or info.si_pid == 0:
                return
            pid = info.si_pid
            status = _wait_status(info)
            cb = self._watch.pop(pid, None)
            if cb is None:
                self.unknown[pid] = status
                while len(self.unknown) > self.KEEP_UNKNOWN:
                    self.unknown.popitem(last=False)
            else:
                try:
                    cb(pid, status)
                except Exception as exc:  # one bad callback must not stop reaping
                    self._on_error(f"exit handler for pid {pid} failed: {type(exc).__name__}: {exc}")
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
