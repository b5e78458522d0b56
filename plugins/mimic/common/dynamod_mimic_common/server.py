"""The object server: answers method calls on computed object paths from
:class:`~dynamod_mimic_common.interface.Interface` tables.

dbus-fast's high-level ``ServiceInterface`` exports fixed objects one
interface at a time; the systemd clients need more: ``GetAll("")`` merging
every interface, object paths computed client-side that must all resolve,
exact signatures checked both ways, errors with systemd's names, calls that
wait on the service manager while others go on, and the caller's uid for
authorization. This module does all of that with one message handler per
connection, on the system bus or on a peer-to-peer connection alike.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.errors import DBusError

from . import errors as E
from .interface import PROPERTIES, Interface, Prop, introspection_xml

log = logging.getLogger("dynamod.mimic")

ALLOW_INTERACTIVE_AUTHORIZATION = 0x4
_BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
_UID_CACHE = 4096


@dataclass(frozen=True)
class Node:
    """A resolved object: the Python object handed to getters and methods,
    and the interfaces it has (besides the standard ones)."""

    obj: Any
    interfaces: Sequence[Interface]

    def interface(self, name: str) -> Interface | None:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        return None


Resolver = Callable[[str, "CallContext"], "Node | Awaitable[Node | None] | None"]
Children = Callable[[], "Iterable[str] | Awaitable[Iterable[str]]"]


class Link:
    """One connection the server answers on. ``peer_uid``/``peer_pid`` are
    set for peer-to-peer connections (from SO_PEERCRED); on a bus the caller
    is looked up by its unique name."""

    def __init__(self, bus: Any, *, peer_uid: int | None = None,
                 peer_pid: int | None = None) -> None:
        self.bus = bus
        self.peer_uid = peer_uid
        self.peer_pid = peer_pid
        self._uids: OrderedDict[str, int] = OrderedDict()
        self._pids: OrderedDict[str, int] = OrderedDict()

    @property
    def is_peer(self) -> bool:
        return self.peer_uid is not None

    async def _ask_bus(self, member: str, sender: str | None,
                       cache: OrderedDict[str, int]) -> int:
        if not sender:
            raise DBusError(E.ACCESS_DENIED, "the caller has no bus name")
        if sender in cache:
            return cache[sender]
        reply = await self.bus.call(Message(
            destination=_BUS[0], path=_BUS[1], interface=_BUS[2],
            member=member, signature="s", body=[sender]))
        if reply.message_type == MessageType.ERROR:
            raise DBusError(E.ACCESS_DENIED,
                            f"cannot identify the caller {sender}: {reply.body[0] if reply.body else reply.error_name}")
        value = int(reply.body[0])
        # Unique names are never reused by a bus daemon, so a cached answer
        # cannot go stale; the bound only keeps memory flat.
        cache[sender] = value
        if len(cache) > _UID_CACHE:
            cache.popitem(last=False)
        return value

    async def uid_of(self, sender: str | None) -> int:
        if self.peer_uid is not None:
            return self.peer_uid
        return await self._ask_bus("GetConnectionUnixUser", sender, self._uids)

    async def pid_of(self, sender: str | None) -> int:
        if self.peer_pid is not None:
            return self.peer_pid
        return await self._ask_bus("GetConnectionUnixProcessID", sender, self._pids)


class CallContext:
    """What a handler knows about the call it answers."""

    def __init__(self, link: Link, msg: Message, path: str) -> None:
        self.link = link
        self.msg = msg
        self.path = path
        self.sender: str | None = msg.sender
        #: the caller allows interactive authorization (header flag 0x4)
        self.interactive = bool(int(msg.flags) & ALLOW_INTERACTIVE_AUTHORIZATION)

    async def uid(self) -> int:
        """The caller's uid (GetConnectionUnixUser, or SO_PEERCRED on a
        peer-to-peer connection)."""
        return await self.link.uid_of(self.sender)

    async def pid(self) -> int:
        """The caller's pid (GetConnectionUnixProcessID, or SO_PEERCRED)."""
        return await self.link.pid_of(self.sender)

    async def require_root(self, action: str) -> None:
        """Refuse with AccessDenied unless the caller is root."""
        if await self.uid() != 0:
            raise E.access_denied(f"Access denied: {action} needs root")


async def _maybe(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if len(value) == 32:
            return value
    raise DBusError(E.FAILED, "no machine id (/etc/machine-id is missing or empty)")


class ObjectServer:
    """Objects at fixed paths and subtrees of computed paths, answered on
    every attached connection."""

    def __init__(self) -> None:
        self._objects: dict[str, Node] = {}
        self._subtrees: dict[str, tuple[Resolver, Children | None]] = {}
        self._links: dict[int, Link] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- registration ------------------------------------------------------

    def add_object(self, path: str, node: Node) -> None:
        """An object at exactly ``path``."""
        self._objects[path] = node

    def remove_object(self, path: str) -> None:
        self._objects.pop(path, None)

    def add_subtree(self, prefix: str, resolve: Resolver, children: Children | None = None) -> None:
        """Every path below ``prefix`` is resolved on demand by
        ``resolve(rest, ctx)`` (``rest`` is the part after ``prefix/``, ``ctx``
        the call being answered, for aliases such as login1's ``session/self``;
        it may be a plain or a coroutine function). Returning None answers
        UnknownObject. ``children()`` names the escaped child elements for
        introspection of ``prefix`` itself."""
        self._subtrees[prefix.rstrip("/") or "/"] = (resolve, children)

    # -- connections -------------------------------------------------------

    def attach(self, bus: Any, *, peer_uid: int | None = None,
               peer_pid: int | None = None) -> Link:
        """Answer method calls arriving on ``bus`` (a connected dbus-fast
        MessageBus, or a peer connection)."""
        link = Link(bus, peer_uid=peer_uid, peer_pid=peer_pid)
        handler = partial(self._on_message, link)
        link.handler = handler  # type: ignore[attr-defined]
        bus.add_message_handler(handler)
        self._links[id(bus)] = link
        return link

    def detach(self, bus: Any) -> None:
        link = self._links.pop(id(bus), None)
        if link is not None:
            bus.remove_message_handler(link.handler)  # type: ignore[attr-defined]

    @property
    def links(self) -> list[Link]:
        return list(self._links.values())

    # -- signals -----------------------------------------------------------

    def emit(self, path: str, interface: Interface, member: str, *args: Any) -> None:
        """Send signal ``member`` of ``interface`` from ``path`` on every
        attached connection (broadcast on a bus, so from the connection that
        owns the name, as clients' match rules require)."""
        sig = interface.signals.get(member)
        if sig is None:
            raise ValueError(f"{interface.name} has no signal {member}")
        body = list(args)
        sig.tree.verify(body)
        for link in list(self._links.values()):
            if not getattr(link.bus, "connected", True):
                continue
            link.bus.send(Message.new_signal(path, interface.name, member, sig.signature, body))

    def properties_changed(self, path: str, interface: Interface, obj: Any,
                           names: Iterable[str]) -> None:
        """Announce that ``names`` of ``interface`` changed on ``obj`` at
        ``path``: values for ``emits="true"`` properties, names only for
        ``"invalidates"``; ``const``/``false`` ones are not announced."""
        changed: dict[str, Variant] = {}
        invalidated: list[str] = []
        for name in names:
            prop = interface.props.get(name)
            if prop is None:
                raise ValueError(f"{interface.name} has no property {name}")
            if prop.emits == "true":
                variant = _variant(prop, obj)
                if variant is not None:
                    changed[name] = variant
            elif prop.emits == "invalidates":
                invalidated.append(name)
        if changed or invalidated:
            self.emit(path, _PROPS_SIGNAL, "PropertiesChanged", interface.name, changed, invalidated)

    # -- dispatch ----------------------------------------------------------

    def _on_message(self, link: Link, msg: Message) -> bool:
        if msg.message_type != MessageType.METHOD_CALL:
            return False
        task = asyncio.get_running_loop().create_task(self._answer(link, msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _answer(self, link: Link, msg: Message) -> None:
        try:
            reply = await self._dispatch(link, msg)
        except DBusError as exc:
            reply = Message.new_error(msg, exc.type, exc.text)
        except Exception as exc:
            log.exception("%s.%s on %s failed", msg.interface, msg.member, msg.path)
            reply = Message.new_error(msg, E.FAILED,
                                      f"internal error answering {msg.member}: {type(exc).__name__}")
        if int(msg.flags) & 0x1:  # NO_REPLY_EXPECTED
            return
        if getattr(link.bus, "connected", True):
            link.bus.send(reply)

    async def resolve(self, path: str, ctx: CallContext) -> Node | None:
        """The object at ``path``, fixed or computed, for the call ``ctx``."""
        node = self._objects.get(path)
        if node is not None:
            return node
        probe = path
        while probe not in ("", "/"):
            probe = probe.rsplit("/", 1)[0] or "/"
            entry = self._subtrees.get(probe)
            if entry is not None:
                rest = path[len(probe):].lstrip("/")
                return await _maybe(entry[0](rest, ctx))
        return None

    async def _children(self, path: str) -> list[str]:
        base = "" if path == "/" else path
        names: list[str] = []
        for other in (*self._objects, *self._subtrees):
            if other.startswith(base + "/") and other != path:
                names.append(other[len(base) + 1:].split("/", 1)[0])
        entry = self._subtrees.get(path)
        if entry is not None and entry[1] is not None:
            names += list(await _maybe(entry[1]()))
        return names

    async def _dispatch(self, link: Link, msg: Message) -> Message:
        path, iface, member, sig = msg.path or "/", msg.interface, msg.member, msg.signature
        if iface == "org.freedesktop.DBus.Peer" or (iface is None and member in ("Ping", "GetMachineId")):
            if member == "Ping" and sig == "":
                return Message.new_method_return(msg)
            if member == "GetMachineId" and sig == "":
                return Message.new_method_return(msg, "s", [_machine_id()])
            raise DBusError(E.UNKNOWN_METHOD, f"Unknown method {member} or signature '{sig}' of org.freedesktop.DBus.Peer")
        ctx = CallContext(link, msg, path)
        node = await self.resolve(path, ctx)
        if iface == "org.freedesktop.DBus.Introspectable" or (iface is None and member == "Introspect"):
            if member != "Introspect" or sig != "":
                raise DBusError(E.UNKNOWN_METHOD, f"Unknown method {member} or signature '{sig}'")
            children = await self._children(path)
            if node is None and not children:
                raise DBusError(E.UNKNOWN_OBJECT, f"Unknown object '{path}'.")
            xml = introspection_xml(node.interfaces if node else (), children)
            return Message.new_method_return(msg, "s", [xml])
        if node is None:
            raise DBusError(E.UNKNOWN_OBJECT, f"Unknown object '{path}'.")
        if iface == "org.freedesktop.DBus.Properties":
            return await self._properties(node, ctx, msg)
        return await self._method(node, ctx, msg)

    async def _method(self, node: Node, ctx: CallContext, msg: Message) -> Message:
        iface, member, sig = msg.interface, msg.member, msg.signature
        if iface is None:
            candidates = [i.methods[member] for i in node.interfaces if member in i.methods]
            if not candidates:
                raise DBusError(E.UNKNOWN_METHOD, f"Unknown method '{member}'.")
            method = next((m for m in candidates if m.in_sig == sig), candidates[0])
        else:
            table = node.interface(iface)
            if table is None:
                raise DBusError(E.UNKNOWN_INTERFACE, f"Unknown interface '{iface}' at {ctx.path}.")
            method = table.methods.get(member or "")
            if method is None:
                raise DBusError(E.UNKNOWN_METHOD, f"Unknown method '{member}' of interface '{iface}'.")
        if method.in_sig != sig:
            raise DBusError(E.INVALID_ARGS,
                            f"Invalid arguments '{sig}' to call {iface or ''}.{member}(), expecting '{method.in_sig}'.")
        result = await _maybe(method.fn(node.obj, ctx, *msg.body))
        body = method.body(result)
        method.out_tree.verify(body)
        return Message.new_method_return(msg, method.out_sig, body)

    async def _properties(self, node: Node, ctx: CallContext, msg: Message) -> Message:
        member, sig, args = msg.member, msg.signature, msg.body
        if member == "GetAll" and sig == "s":
            return Message.new_method_return(msg, "a{sv}", [self._get_all(node, args[0])])
        if member == "Get" and sig == "ss":
            prop = _find_prop(node, args[0], args[1])
            variant = _variant(prop, node.obj)
            if variant is None:
                raise DBusError(E.UNKNOWN_PROPERTY, f"Unknown property '{args[1]}' of '{args[0]}'.")
            return Message.new_method_return(msg, "v", [variant])
        if member == "Set" and sig == "ssv":
            prop = _find_prop(node, args[0], args[1])
            if prop.set is None:
                raise DBusError(E.PROPERTY_READ_ONLY, f"Property '{args[1]}' is read-only.")
            value: Variant = args[2]
            if value.signature != prop.signature:
                raise DBusError(E.INVALID_ARGS,
                                f"Property '{args[1]}' has type '{prop.signature}', not '{value.signature}'.")
            await _maybe(prop.set(node.obj, ctx, value.value))
            return Message.new_method_return(msg)
        if member in ("Get", "GetAll", "Set"):
            want = {"Get": "ss", "GetAll": "s", "Set": "ssv"}[member]
            raise DBusError(E.INVALID_ARGS,
                            f"Invalid arguments '{sig}' to call org.freedesktop.DBus.Properties.{member}(), expecting '{want}'.")
        raise DBusError(E.UNKNOWN_METHOD, f"Unknown method '{member}' of org.freedesktop.DBus.Properties.")

    def _get_all(self, node: Node, iface: str) -> dict[str, Variant]:
        if iface:
            table = node.interface(iface)
            if table is None:
                if iface in ("org.freedesktop.DBus.Peer", "org.freedesktop.DBus.Introspectable",
                             "org.freedesktop.DBus.Properties"):
                    return {}
                raise DBusError(E.UNKNOWN_INTERFACE, f"Unknown interface '{iface}'.")
            tables: Sequence[Interface] = (table,)
        else:
            tables = node.interfaces
        out: dict[str, Variant] = {}
        for table in tables:
            for prop in table.props.values():
                variant = _variant(prop, node.obj, omit_bad=True)
                if variant is not None:
                    out[prop.name] = variant
        return out


def _find_prop(node: Node, iface: str, name: str) -> Prop:
    if iface:
        table = node.interface(iface)
        if table is None:
            raise DBusError(E.UNKNOWN_INTERFACE, f"Unknown interface '{iface}'.")
        prop = table.props.get(name)
    else:
        prop = next((t.props[name] for t in node.interfaces if name in t.props), None)
    if prop is None:
        raise DBusError(E.UNKNOWN_PROPERTY, f"Unknown property '{name}' of '{iface}'.")
    return prop


def _variant(prop: Prop, obj: Any, omit_bad: bool = False) -> Variant | None:
    try:
        value = prop.get(obj)
        if value is None:
            return None
        return Variant(prop.tree, value)
    except DBusError:
        if omit_bad:
            return None
        raise
    except Exception as exc:
        # A wrong type would make strict clients reject the whole GetAll
        # ("No such device or address"); a missing one keeps their default.
        log.error("property %s (%s) has no valid value: %s", prop.name, prop.signature, exc)
        if omit_bad:
            return None
        raise DBusError(E.FAILED, f"property {prop.name} has no valid value") from None


_PROPS_SIGNAL = PROPERTIES
