"""Readiness type ``exec``: ready when ``check-exec`` exits 0.

The check runs every ``interval`` (default 1 s), each run bounded by
``check-timeout`` (default 5 s, then it is killed and counts as a failed
attempt), until one exits 0 or the readiness ``timeout`` ends the wait. It
runs as the service runs (same user, environment plus ``MAINPID``, working
directory) and its output goes to the service's log.

The host spawns it (``ServiceContext.run_helper``): the manager reaps all of
its children with ``waitpid(-1)``, so an asyncio subprocess would never learn
its own exit status.
"""

from __future__ import annotations

import asyncio

from dynamod.api import ReadinessFailed, ServiceContext, SpawnSpec
from dynamod.config.units import format_duration
from dynamod_readiness.options import get_duration

DEFAULT_CHECK_TIMEOUT = 5.0
DEFAULT_INTERVAL = 1.0


def _outcome(code: int | None, timeout: float) -> str:
    if code is None:
        return f"did not finish within {format_duration(timeout)} (killed)"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exited {code}"


class ExecDetector:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        opts = ctx.config.readiness.options
        self.argv: list[str] = list(opts["check-exec"])
        self.check_timeout = get_duration(opts, "check-timeout", DEFAULT_CHECK_TIMEOUT)
        self.interval = get_duration(opts, "interval", DEFAULT_INTERVAL)

    def prepare(self, spec: SpawnSpec) -> None:
        pass

    async def wait(self) -> None:
        run = getattr(self.ctx, "run_helper", None)
        if run is None:
            raise ReadinessFailed(
                "readiness type 'exec' needs a dynamod with ServiceContext.run_helper"
            )
        last = ""
        while True:
            try:
                code = await run(self.argv, self.check_timeout)
            except Exception as exc:  # cannot be started: retrying will not help
                raise ReadinessFailed(f"check-exec cannot run: {exc}") from None
            if code == 0:
                return
            outcome = _outcome(code, self.check_timeout)
            if outcome != last:  # one line per change, not per attempt
                self.ctx.log(
                    f"exec: check {outcome}; retrying every {format_duration(self.interval)}"
                )
                last = outcome
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        pass
