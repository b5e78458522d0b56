"""The object layer with dbus-fast clients: signals from the name owner,
calls answered asynchronously, many clients at once, peer-to-peer."""

from __future__ import annotations

import asyncio
import os
import socket

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dynamod_mimic_common import connect_peer

from dynamod.testing import deadline

DEST = "org.example.Demo"
PATH = "/org/example/Demo"


def run(coro, seconds: float = 30):
    with deadline(seconds, "D-Bus client"):
        return asyncio.run(coro)


async def call(bus, member, sig="", body=(), path=PATH, iface="org.example.Demo", dest=DEST):
    return await bus.call(Message(destination=dest, path=path, interface=iface, member=member,
                                  signature=sig, body=list(body)))


def test_signals_come_from_the_name_owner(demo):
    async def body():
        bus = await MessageBus(bus_address=demo.bus.address).connect()
        owner = (await call(bus, "GetNameOwner", "s", [DEST], "/org/freedesktop/DBus",
                            "org.freedesktop.DBus", "org.freedesktop.DBus")).body[0]
        got: list[Message] = []
        seen = asyncio.Event()

        def on(msg):
            if msg.message_type == MessageType.SIGNAL and msg.path == PATH:
                got.append(msg)
                if msg.member == "Bumped":
                    seen.set()

        bus.add_message_handler(on)
        await call(bus, "AddMatch", "s", [f"type='signal',sender='{DEST}'"], "/org/freedesktop/DBus",
                   "org.freedesktop.DBus", "org.freedesktop.DBus")
        reply = await call(bus, "Bump")
        assert reply.body == [1]
        await seen.wait()
        bus.disconnect()
        return owner, got

    owner, got = run(body())
    assert [m.member for m in got] == ["PropertiesChanged", "Bumped"]
    assert all(m.sender == owner for m in got)
    iface, changed, invalidated = got[0].body
    assert iface == "org.example.Demo"
    # emits=true: values; invalidates: names only; const: not at all.
    assert {k: (v.signature, v.value) for k, v in changed.items()} == {
        "Count": ("u", 1), "Name": ("s", "demo")}
    assert invalidated == ["Pair"]
    assert got[1].body == [1] and got[1].signature == "u"


def test_a_waiting_call_does_not_hold_up_others(demo):
    async def body():
        bus = await MessageBus(bus_address=demo.bus.address).connect()
        waiting = asyncio.ensure_future(call(bus, "Wait"))
        echoed = await call(bus, "Echo", "s", ["meanwhile"])
        assert not waiting.done()
        await call(bus, "Release")
        released = await waiting
        bus.disconnect()
        return echoed.body, released.body

    assert run(body()) == (["meanwhile"], ["released"])


def test_many_clients_at_once(demo):
    async def client(i):
        bus = await MessageBus(bus_address=demo.bus.address).connect()
        replies = await asyncio.gather(*(call(bus, "Add", "uu", [i, j]) for j in range(20)))
        bus.disconnect()
        return [r.body[0] for r in replies]

    async def body():
        return await asyncio.gather(*(client(i) for i in range(60)))

    results = run(body(), 120)
    assert results == [[i + j for j in range(20)] for i in range(60)]


def test_client_vanishing_mid_call_leaves_service_serving(demo):
    async def body():
        bus = await MessageBus(bus_address=demo.bus.address).connect()
        bus.send(Message(destination=DEST, path=PATH, interface="org.example.Demo", member="Wait"))
        await call(bus, "Echo", "s", ["x"])
        bus.disconnect()
        other = await MessageBus(bus_address=demo.bus.address).connect()
        await call(other, "Release")  # the lost caller's reply goes nowhere
        reply = await call(other, "Echo", "s", ["after"])
        other.disconnect()
        return reply.body

    assert run(body()) == ["after"]


def test_peer_to_peer_without_bus(demo):
    async def body():
        conn = await connect_peer(demo.peer)
        who = await call(conn, "WhoAmI", dest=None)
        props = await call(conn, "GetAll", "s", [""], iface="org.freedesktop.DBus.Properties", dest=None)
        conn.disconnect()
        return who.body, props.body[0]

    (uid, pid, _), props = run(body())
    assert uid == 0 and pid == os.getpid()
    assert props["Extra"].value == "more"


def test_peer_handshake_garbage_is_dropped(demo):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(demo.peer)
    s.sendall(b"\0AUTH KERBEROS\r\n")
    assert s.recv(100) == b"REJECTED EXTERNAL\r\n"
    s.sendall(b"AUTH EXTERNAL 3939\r\n")  # claims uid 99, is root
    assert s.recv(100) == b"REJECTED EXTERNAL\r\n"
    s.sendall(b"BEGIN\r\n")  # before OK
    assert s.recv(100) == b"ERROR\r\n"
    s.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(demo.peer)
    s.sendall(b"no nul" + b"x" * 100)
    try:
        assert s.recv(100) == b""  # closed ...
    except ConnectionResetError:
        pass  # ... or reset, as it left our bytes unread
    s.close()

    async def body():
        conn = await connect_peer(demo.peer)
        r = await call(conn, "Echo", "s", ["fine"], dest=None)
        conn.disconnect()
        return r.body

    assert run(body()) == ["fine"]
