"""Connecting to the system bus and owning a well-known name."""

from __future__ import annotations

import os

from dbus_fast import BusType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus

from . import writer

DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"


class BusUnavailable(Exception):
    """The system bus cannot be reached or the name cannot be owned; the
    message says which and where."""


def system_bus_address() -> str:
    """``$DBUS_SYSTEM_BUS_ADDRESS`` or the standard socket (what the systemd
    clients use too)."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS


async def connect_system_bus(address: str | None = None) -> MessageBus:
    """A connected MessageBus on the system bus (``address`` overrides)."""
    address = address or system_bus_address()
    try:
        bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM,
                               negotiate_unix_fd=True).connect()
    except Exception as exc:
        raise BusUnavailable(f"cannot connect to the system bus at {address}: {exc}") from exc
    writer.install(bus)
    return bus


async def claim_name(bus: MessageBus, name: str) -> None:
    """Own ``name`` or fail: no queueing, so a second instance says at once
    that the name is taken instead of waiting silently behind the first."""
    try:
        reply = await bus.request_name(name, NameFlag.DO_NOT_QUEUE)
    except Exception as exc:
        raise BusUnavailable(f"cannot own {name} on the system bus: {exc}") from exc
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        raise BusUnavailable(f"cannot own {name} on the system bus: another process owns it")
