"""PropertiesChanged after each setter, from the connection that owns the names."""

from __future__ import annotations

import asyncio

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus


def test_properties_changed(machine) -> None:
    async def run() -> list[tuple[str, str, dict, list]]:
        bus = await MessageBus(bus_address=machine.bus.address, bus_type=BusType.SYSTEM).connect()
        got: list[tuple[str, str, dict, list]] = []
        owners: dict[str, str] = {}
        arrived = asyncio.Event()

        def on(msg: Message) -> None:
            if msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged":
                iface, changed, invalidated = msg.body
                got.append((msg.sender, iface, {k: v.value for k, v in changed.items()}, invalidated))
                if len(got) >= 4:
                    arrived.set()

        bus.add_message_handler(on)
        for name in ("org.freedesktop.hostname1", "org.freedesktop.timedate1", "org.freedesktop.locale1"):
            reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                           interface="org.freedesktop.DBus", member="GetNameOwner",
                                           signature="s", body=[name]))  # fmt: skip
            owners[name] = reply.body[0]
            await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                   interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                                   body=[f"type='signal',sender='{name}',member='PropertiesChanged'"]))  # fmt: skip
        loop = asyncio.get_running_loop()
        for argv in (["hostnamectl", "set-hostname", "--pretty", "Pretty One"],
                     ["hostnamectl", "chassis", "laptop"],
                     ["timedatectl", "set-timezone", "Asia/Tokyo"],
                     ["localectl", "set-locale", "LANG=C.UTF-8"]):  # fmt: skip
            await loop.run_in_executor(None, lambda a=argv: machine.run(*a, check=True))
        await asyncio.wait_for(arrived.wait(), 15)
        bus.disconnect()
        assert len(set(owners.values())) == 1  # one connection owns all three
        return [(owners["org.freedesktop.hostname1"] == s, i, c, inv) for s, i, c, inv in got]

    got = asyncio.run(run())
    assert got == [
        (True, "org.freedesktop.hostname1", {"PrettyHostname": "Pretty One"}, []),
        (True, "org.freedesktop.hostname1", {"Chassis": "laptop", "IconName": "computer-laptop"}, []),
        (True, "org.freedesktop.timedate1", {"Timezone": "Asia/Tokyo"}, []),
        (True, "org.freedesktop.locale1", {"Locale": ["LANG=C.UTF-8"]}, []),
    ]
