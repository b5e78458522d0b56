"""A stand-in for the systemd1 bridge in these tests: ``hostnamectl status``
also reads ``GetAll("")`` of the systemd1 Manager (Virtualization,
Architecture). Prints ``ready`` once it owns the name."""

from __future__ import annotations

import asyncio

from dynamod_mimic_common import Interface, Node, ObjectServer, Prop, claim_name, connect_system_bus

MANAGER = Interface(
    "org.freedesktop.systemd1.Manager",
    props=[
        Prop("Virtualization", "s", lambda _: "dynamod-test-vm"),
        Prop("Architecture", "s", lambda _: "x86-64"),
    ],
)


async def main() -> None:
    server = ObjectServer()
    server.add_object("/org/freedesktop/systemd1", Node(object(), (MANAGER,)))
    bus = await connect_system_bus()
    server.attach(bus)
    await claim_name(bus, "org.freedesktop.systemd1")
    print("ready", flush=True)
    await bus.wait_for_disconnect()


asyncio.run(main())
