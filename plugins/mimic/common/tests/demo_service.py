"""A made-up service on the object layer, run as a real process by the
layer's tests: ``python demo_service.py [--peer PATH]``. Prints ``ready``
once it owns org.example.Demo (and listens on PATH)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from dynamod_mimic_common import (
    CallContext,
    DBusError,
    Interface,
    Method,
    Node,
    ObjectServer,
    PeerServer,
    Prop,
    Signal,
    child_path,
    claim_name,
    connect_system_bus,
    unescape_label,
)

PATH = "/org/example/Demo"
KNOWN = {"foo.service", "-.slice", "1st"}


class Demo:
    def __init__(self, server: ObjectServer) -> None:
        self.server = server
        self.name = "demo"
        self.count = 0
        self.gate = asyncio.Event()


class Item:
    def __init__(self, name: str) -> None:
        self.name = name


async def set_name(demo: Demo, ctx: CallContext, value: str) -> None:
    await ctx.require_root("setting Name")
    if not value:
        raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", "Name must not be empty")
    demo.name = value
    demo.server.properties_changed(PATH, DEMO, demo, ["Name"])


def bump(demo: Demo, ctx: CallContext) -> int:
    demo.count += 1
    demo.server.properties_changed(PATH, DEMO, demo, ["Count", "Name", "Pair", "Fixed"])
    demo.server.emit(PATH, DEMO, "Bumped", demo.count)
    return demo.count


async def wait(demo: Demo, ctx: CallContext) -> str:
    await demo.gate.wait()
    return "released"


def release(demo: Demo, ctx: CallContext) -> None:
    demo.gate.set()


def fail(demo: Demo, ctx: CallContext, text: str) -> None:
    raise DBusError("org.example.Error.Custom", text)


def crash(demo: Demo, ctx: CallContext) -> None:
    raise RuntimeError("/secret/path/leak")


async def whoami(demo: Demo, ctx: CallContext) -> tuple[int, int, bool]:
    return await ctx.uid(), await ctx.pid(), ctx.interactive


DEMO = Interface("org.example.Demo", methods=[
    Method("Echo", "s", "s", lambda d, c, s: s, ("text",), ("text",)),
    Method("Add", "uu", "u", lambda d, c, a, b: a + b),
    Method("Split", "s", "ss", lambda d, c, s: tuple(s.split("=", 1))),
    Method("Bump", "", "u", bump),
    Method("Wait", "", "s", wait),
    Method("Release", "", "", release),
    Method("Fail", "s", "", fail),
    Method("Crash", "", "", crash),
    Method("BadReply", "", "u", lambda d, c: "not a number"),
    Method("WhoAmI", "", "uub", whoami),
], props=[
    Prop("Name", "s", lambda d: d.name, set=set_name),
    Prop("Count", "u", lambda d: d.count),
    Prop("Pair", "(us)", lambda d: [7, "seven"], emits="invalidates"),
    Prop("Fixed", "t", lambda d: 2**64 - 1, emits="const"),
    Prop("Tags", "as", lambda d: ["a", "b"]),
    Prop("Broken", "u", lambda d: -1),
    Prop("Absent", "s", lambda d: None),
], signals=[Signal("Bumped", "u", ("count",))])

EXTRA = Interface("org.example.Extra", props=[Prop("Extra", "s", lambda d: "more")])

ITEM = Interface("org.example.Item", props=[
    Prop("Name", "s", lambda i: i.name),
    Prop("Known", "b", lambda i: i.name in KNOWN),
])


async def resolve_item(rest: str, ctx: CallContext) -> Node | None:
    if rest == "self":
        return Node(Item(f"caller-{await ctx.uid()}"), (ITEM,))
    name = unescape_label(rest) if "/" not in rest else None
    if name is None:
        return None
    await asyncio.sleep(0)  # resolvers may wait on something
    return Node(Item(name), (ITEM,))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer")
    args = parser.parse_args()
    server = ObjectServer()
    demo = Demo(server)
    server.add_object(PATH, Node(demo, (DEMO, EXTRA)))
    server.add_subtree(PATH + "/item", resolve_item,
                       lambda: [child_path("", n).lstrip("/") for n in sorted(KNOWN)])
    bus = await connect_system_bus()
    server.attach(bus)
    await claim_name(bus, "org.example.Demo")
    if args.peer:
        peer = PeerServer(server, args.peer)
        await peer.start()
    print("ready", flush=True)
    await bus.wait_for_disconnect()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
