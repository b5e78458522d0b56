"""The ``http`` detector: one instance per start of a service.

It runs on the service manager's event loop, so it must never block: the
request uses asyncio streams (a minimal HTTP/1.1 GET; only the status line
is read), and every wait is an ``await``. The host bounds the whole wait
with the service's readiness ``timeout`` and cancels ``wait()`` when the
process exits first, so the loop below may poll forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from dynamod.api import ServiceContext, SpawnSpec

FIRST_DELAY = 0.05
MAX_DELAY = 1.0
ATTEMPT_TIMEOUT = 2.0  # one slow answer must not use up the whole timeout


async def fetch_status(url: str) -> int:
    """GET ``url`` and return the status code of the answer. Raises OSError
    (cannot connect) or ValueError (not HTTP). Shared with the CLI command."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = (
        f"GET {target} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        "User-Agent: dynamod-readiness-http\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    reader, writer = await asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 80)
    try:
        writer.write(request)
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    fields = line.decode("latin-1").split(None, 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ValueError(f"not an HTTP response: {line[:60]!r}")
    return int(fields[1])


class HttpDetector:
    def __init__(self, ctx: ServiceContext) -> None:
        # Options were validated at load time: just read them. Nothing else
        # happens here (the service is not even spawned yet).
        self.ctx = ctx
        opts = ctx.config.readiness.options
        self.url: str = opts["url"]
        self.expected: int = opts.get("status", 200)

    def prepare(self, spec: SpawnSpec) -> None:
        """Nothing to add to the spawn: the service needs no fd or env."""

    async def wait(self) -> None:
        delay = FIRST_DELAY
        last = ""
        while True:
            try:
                code = await asyncio.wait_for(fetch_status(self.url), ATTEMPT_TIMEOUT)
            except TimeoutError:
                outcome = f"no answer within {ATTEMPT_TIMEOUT:g}s"
            except (OSError, ValueError) as exc:
                outcome = str(exc) or type(exc).__name__
            else:
                if code == self.expected:
                    return
                outcome = f"answered {code}, expecting {self.expected}"
            if outcome != last:  # log what changed, not every attempt
                self.ctx.log(f"http: GET {self.url}: {outcome}; still waiting")
                last = outcome
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    def close(self) -> None:
        """Nothing is kept open between attempts."""
