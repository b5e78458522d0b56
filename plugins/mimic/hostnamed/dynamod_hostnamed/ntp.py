"""SetNTP, CanNTP and NTP through svmgr's control socket.

The NTP service is a dynamod service named in the configuration
(``[ntp] services``): CanNTP is whether svmgr knows one of them, NTP whether
one of them is up or on its way up, SetNTP(true) starts the first one svmgr
knows and SetNTP(false) stops all that it knows; where svmgr has
EnableService/DisableService (systemd's enable half), the choice is also
recorded so that it survives a reboot. Each question opens its own
short connection, so a restarted svmgr is simply found again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from dynamod.ipc.aclient import AsyncClient, ConnectError, ProtocolError, RemoteError
from dynamod.ipc.schema import SchemaError
from dynamod_hostnamed.errors import FAILED, NO_NTP_SUPPORT, BusError

log = logging.getLogger("dynamod-hostnamed")

# Service states (docs/protocol.md) in which the NTP service counts as enabled.
_ACTIVE = frozenset({"pending", "starting", "waiting-ready", "running", "restarting"})


class NtpControl:
    def __init__(self, services: tuple[str, ...], socket_path: str | None = None) -> None:
        self.services = services
        self.socket_path = socket_path
        self.unreachable = ""  # why the last connection attempt failed
        self.warned_persist = False

    async def connect(self) -> AsyncClient | None:
        try:
            client = await AsyncClient.connect(self.socket_path, timeout=20.0)
            await client.hello("dynamod-hostnamed")
        except (ConnectError, ProtocolError, RemoteError, TimeoutError) as exc:
            log.debug("NTP: svmgr not reachable: %s", exc)
            self.unreachable = str(exc)
            return None
        self.unreachable = ""
        return client

    async def states(self) -> dict[str, str]:
        """``{service: state}`` of the configured services svmgr knows."""
        client = await self.connect()
        if client is None:
            return {}
        found: dict[str, str] = {}
        async with client:
            for name in self.services:
                try:
                    reply = await client.request("ServiceStatus", {"name": name})
                except RemoteError as exc:
                    if exc.code != "unknown-service":
                        log.warning("NTP: ServiceStatus %s: %s", name, exc.message)
                    continue
                except (ProtocolError, TimeoutError) as exc:
                    log.warning("NTP: ServiceStatus %s: %s", name, exc)
                    break
                found[name] = str(reply.body["service"].get("state", ""))
        return found

    async def status(self) -> tuple[bool, bool]:
        """(CanNTP, NTP)."""
        found = await self.states()
        return bool(found), any(s in _ACTIVE for s in found.values())

    async def set(self, enable: bool) -> None:
        found = await self.states()
        if not found:
            if not enable:
                return
            raise BusError(
                NO_NTP_SUPPORT,
                "NTP not supported: none of the NTP services "
                f"({', '.join(self.services) or 'none configured'}) is known to dynamod",
            )
        client = await self.connect()
        if client is None:
            raise BusError(FAILED, "Cannot reach dynamod-svmgr to start or stop the NTP service")
        async with client:
            if enable:
                # systemd enables and starts the first service of its list.
                name = next(iter(found))
                await self._persist(client, "EnableService", name)
                await self._job(client, "StartService", name)
            else:
                for name in found:
                    await self._job(client, "StopService", name)
                    await self._persist(client, "DisableService", name)

    @staticmethod
    async def _job(client: AsyncClient, request: str, name: str) -> None:
        try:
            await client.request(request, {"name": name}, timeout=90.0)
        except RemoteError as exc:
            verb = request.removesuffix("Service").lower()
            raise BusError(FAILED, f"Failed to {verb} {name}: {exc.message}") from exc
        except (ProtocolError, TimeoutError) as exc:
            raise BusError(FAILED, f"{request} {name}: {exc}") from exc

    async def _persist(self, client: AsyncClient, request: str, name: str) -> None:
        """Enable/DisableService where svmgr has them, so the choice survives a
        reboot; an svmgr without them still gets the start or stop."""
        try:
            await client.request(request, {"name": name})
        except SchemaError:
            self._no_persist(request)
        except RemoteError as exc:
            if exc.code == "bad-request":
                self._no_persist(request)
                return
            verb = request.removesuffix("Service").lower()
            raise BusError(FAILED, f"Failed to {verb} {name}: {exc.message}") from exc
        except (ProtocolError, TimeoutError) as exc:
            raise BusError(FAILED, f"{request} {name}: {exc}") from exc

    def _no_persist(self, request: str) -> None:
        if not self.warned_persist:
            self.warned_persist = True
            log.info("svmgr has no %s: SetNTP starts and stops, not remembered across a reboot", request)


class NtpWatcher:
    """Keeps CanNTP and NTP current for the (synchronous) property getters:
    follows svmgr's ServiceStateChanged events, reconnecting with a backoff
    when svmgr goes away (CanNTP is false meanwhile). ``on_change`` is
    called after NTP changed."""

    def __init__(self, control: NtpControl, on_change: Callable[[], None] | None = None) -> None:
        self.control = control
        self.states: dict[str, str] = {}
        self.on_change = on_change
        self.synced = asyncio.Event()

    @property
    def can_ntp(self) -> bool:
        return bool(self.states)

    @property
    def ntp(self) -> bool:
        return any(s in _ACTIVE for s in self.states.values())

    def update(self, states: dict[str, str]) -> None:
        before = self.ntp
        self.states = states
        self.synced.set()
        if before != self.ntp and self.on_change is not None:
            self.on_change()

    async def run(self) -> None:
        delay = 0.5
        said = ""
        while True:
            client = await self.control.connect()
            if client is None and self.control.unreachable != said:
                said = self.control.unreachable
                log.info("NTP: svmgr not reachable (CanNTP is false until it is): %s", said)
            if client is not None:
                said = ""
                delay = 0.5
                try:
                    async with client:
                        await client.request("Subscribe", {})
                        self.update(await self.control.states())
                        async for event in client.events():
                            name = event.body.get("name")
                            if event.type == "ServiceStateChanged" and name in self.control.services:
                                self.update({**self.states, name: str(event.body["new"])})
                except (ProtocolError, RemoteError, TimeoutError) as exc:
                    log.info("NTP: lost svmgr: %s", exc)
                except Exception:
                    # A malformed event must not end the watch: NTP would go stale.
                    log.exception("NTP: following svmgr failed; reconnecting")
            self.update({})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
