"""Readiness type ``tcp-port``: ready when a TCP connection to ``host``
(default 127.0.0.1) and ``port`` succeeds.

Polling starts fast and backs off (50 ms growing to 1 s): most services
open their port within a fraction of a second, and a slow one should not
cost a connection attempt every few milliseconds. Each attempt is bounded on
its own so that a dropped SYN (a firewalled address) cannot use up the
whole readiness timeout in one attempt. Names are resolved on every attempt
(asyncio does that in its resolver thread, never on the loop); literal
addresses skip the resolver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from dynamod.api import ServiceContext, SpawnSpec
from dynamod_readiness.options import DEFAULT_HOST, strip_brackets

FIRST_DELAY = 0.05
MAX_DELAY = 1.0
ATTEMPT_TIMEOUT = 2.0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {ATTEMPT_TIMEOUT:g}s"
    if isinstance(exc, OSError) and exc.errno:
        # asyncio's messages embed the address; the errno text is enough.
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


class TcpPortDetector:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        opts = ctx.config.readiness.options
        self.host = strip_brackets(opts.get("host", DEFAULT_HOST))
        self.port: int = opts["port"]

    def prepare(self, spec: SpawnSpec) -> None:
        pass

    async def wait(self) -> None:
        delay = FIRST_DELAY
        last = ""
        while True:
            try:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), ATTEMPT_TIMEOUT
                )
            except (OSError, TimeoutError) as exc:
                why = _describe(exc)
                if why != last:  # log changes, not every attempt
                    self.ctx.log(f"tcp-port: {self.host} port {self.port}: {why}; still waiting")
                    last = why
            else:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, MAX_DELAY)

    def close(self) -> None:
        pass
