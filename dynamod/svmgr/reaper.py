"""The one place in the service manager that calls ``waitpid``.

SIGCHLD coalesces, so each signal drains every exited child with
``waitpid(-1, WNOHANG)``. Spawners register a callback for a PID right after
spawning (before the loop runs again, so no exit can be missed). Exits of
PIDs nobody registered (daemons of forking services that were reparented to
us as subreaper, or leftovers) are remembered for a while so that a PID read
later from a pid file can still be matched with its exit status.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import OrderedDict
from collections.abc import Callable

ExitCallback = Callable[[int, int], None]  # (pid, wait status)


def describe_status(status: int) -> str:
    """``exited 0``, ``exited 3``, ``killed by SIGKILL``..."""
    if os.WIFEXITED(status):
        return f"exited {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}"
    return f"status {status:#x}"


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
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            cb = self._watch.pop(pid, None)
            if cb is None:
                self.unknown[pid] = status
                while len(self.unknown) > self.KEEP_UNKNOWN:
                    self.unknown.popitem(last=False)
                continue
            try:
                cb(pid, status)
            except Exception as exc:  # one bad callback must not stop reaping
                self._on_error(f"exit handler for pid {pid} failed: {type(exc).__name__}: {exc}")
