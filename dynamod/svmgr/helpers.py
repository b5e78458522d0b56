"""Short-lived helper processes a plugin runs on behalf of a service (the
``exec`` readiness check, for one).

They are spawned like the service itself (its user, environment, working
directory; cheap vfork path) and their exit is learnt from the manager's
reaper: asyncio's own child watcher would race with the reaper's
``waitpid(-1)`` and steal exit statuses, so plugins must not use
``asyncio.create_subprocess_exec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dynamod.svmgr.spawn import build_spec, spawn

if TYPE_CHECKING:
    from dynamod.svmgr.context import ServiceHandle as Service


async def run_helper(s: Service, argv: Sequence[str], timeout: float) -> int | None:
    """Run ``argv`` once for service ``s``; see ``ServiceContext.run_helper``."""
    manager = s.manager
    spec = build_spec(s.cfg, list(argv))  # raises SpawnError with the reason
    if s.main_pid is not None:
        spec.env["MAINPID"] = str(s.main_pid)
    spawned = spawn(spec)
    pid = spawned.pid
    done: asyncio.Future[int] = manager.loop.create_future()

    def exited(_pid: int, status: int) -> None:
        s.control_pids.discard(pid)
        if not done.done():
            done.set_result(status)

    manager.reaper.watch(pid, exited)
    s.control_pids.add(pid)
    # Its output is the service's (the pipes close at EOF).
    manager.logd.add_output(s.name, spawned)
    try:
        status = await asyncio.wait_for(asyncio.shield(done), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        # Its own session (spawn() starts one): the group is the helper and
        # whatever it started. The reaper collects it later.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if isinstance(exc, asyncio.CancelledError):
            raise
        return None
    return os.waitstatus_to_exitcode(status)
