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
import ipaddress
import os
from typing import Any

from dynamod.api import ServiceContext, SpawnSpec
from dynamod_readiness.options import Problems, is_int

OPTIONS = frozenset({"port", "host"})
DEFAULT_HOST = "127.0.0.1"
FIRST_DELAY = 0.05
MAX_DELAY = 1.0
ATTEMPT_TIMEOUT = 2.0


def _strip_brackets(host: str) -> str:
    # "[::1]" as written in URLs is accepted for an IPv6 literal.
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def validate(table: dict[str, Any]) -> Problems:
    problems: Problems = []
    port = table.get("port")
    if port is None:
        problems.append(("port", "required for readiness type 'tcp-port'"))
    elif not is_int(port) or not 1 <= port <= 65535:
        problems.append(("port", f"expected a TCP port number (1-65535), got {port!r}"))
    if "host" in table:
        host = table["host"]
        if not isinstance(host, str) or not host.strip():
            problems.append(("host", "expected a host name or an IP address"))
        elif any(c.isspace() for c in host):
            problems.append(("host", f"invalid host {host!r}"))
        elif ":" in host:
            try:
                ipaddress.IPv6Address(_strip_brackets(host))
            except ValueError:
                problems.append(("host", f"invalid IPv6 address {host!r}"))
    return problems


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
        self.host = _strip_brackets(opts.get("host", DEFAULT_HOST))
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
