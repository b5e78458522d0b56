"""Interface tables: the one description of an interface that dispatch,
property access, signals and introspection are all generated from.

A mimic service declares each D-Bus interface once, as an :class:`Interface`
of :class:`Method`, :class:`Prop` and :class:`Signal` entries with their exact
D-Bus signatures; the clients check types strictly, so the signature written
here is the contract.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from dbus_fast.signature import SignatureTree

EMITS = ("true", "invalidates", "const", "false")

Getter = Callable[[Any], Any]
Setter = Callable[..., "Awaitable[None] | None"]
Handler = Callable[..., Any]


def _tree(signature: str, what: str) -> SignatureTree:
    try:
        return SignatureTree(signature)
    except Exception as exc:
        raise ValueError(f"{what}: bad D-Bus signature {signature!r}: {exc}") from None


def _single(signature: str, what: str) -> SignatureTree:
    tree = _tree(signature, what)
    if len(tree.types) != 1:
        raise ValueError(f"{what}: {signature!r} is not one complete type")
    return tree


@dataclass(frozen=True)
class Prop:
    """A property. ``get(obj)`` returns the value in the Python form
    dbus-fast marshals (int, str, bool, list, tuple for structs, dict for
    ``a{..}``); returning None leaves the property out of GetAll and makes Get
    answer UnknownProperty (for values an object does not have).
    ``set(obj, ctx, value)``, if given, makes the property writable (it may
    be a coroutine function; raise DBusError to refuse). ``emits`` is the
    org.freedesktop.DBus.Property.EmitsChangedSignal annotation and decides
    how :meth:`ObjectServer.properties_changed` announces it."""

    name: str
    signature: str
    get: Getter
    set: Setter | None = None
    emits: str = "true"
    tree: SignatureTree = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tree", _single(self.signature, f"property {self.name}"))
        if self.emits not in EMITS:
            raise ValueError(f"property {self.name}: emits must be one of {EMITS}")


@dataclass(frozen=True)
class Method:
    """A method. ``fn(obj, ctx, *args)`` gets the resolved object, the
    :class:`~dynamod_mimic_common.server.CallContext` and the arguments; it
    may be a plain function or a coroutine function (the call is answered
    when it returns, other calls go on meanwhile). Its return value is None
    for an empty ``out_sig``, the value itself for one complete type, and a
    tuple of values for several. ``in_names``/``out_names`` are for
    introspection only."""

    name: str
    in_sig: str
    out_sig: str
    fn: Handler
    in_names: Sequence[str] = ()
    out_names: Sequence[str] = ()
    out_tree: SignatureTree = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _tree(self.in_sig, f"method {self.name} input")
        object.__setattr__(self, "out_tree", _tree(self.out_sig, f"method {self.name} output"))

    def body(self, result: Any) -> list[Any]:
        """The reply body for a handler's return value (see the class doc)."""
        count = len(self.out_tree.types)
        if count == 0:
            return []
        if count == 1:
            return [result]
        if not isinstance(result, (tuple, list)) or len(result) != count:
            raise TypeError(f"method {self.name} must return {count} values for {self.out_sig!r}")
        return list(result)


@dataclass(frozen=True)
class Signal:
    """A signal with its signature; ``names`` are for introspection only."""

    name: str
    signature: str
    names: Sequence[str] = ()
    tree: SignatureTree = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tree", _tree(self.signature, f"signal {self.name}"))


class Interface:
    """One D-Bus interface: a name and its members, looked up by name."""

    def __init__(self, name: str, *, methods: Iterable[Method] = (),
                 props: Iterable[Prop] = (), signals: Iterable[Signal] = ()) -> None:
        self.name = name
        self.methods = {m.name: m for m in methods}
        self.props = {p.name: p for p in props}
        self.signals = {s.name: s for s in signals}

    def __repr__(self) -> str:
        return f"Interface({self.name!r})"

    def extend(self, *, methods: Iterable[Method] = (), props: Iterable[Prop] = (),
               signals: Iterable[Signal] = ()) -> Interface:
        """A copy with more members (an interface shared by several object
        kinds, each adding its own)."""
        return Interface(self.name,
                         methods=[*self.methods.values(), *methods],
                         props=[*self.props.values(), *props],
                         signals=[*self.signals.values(), *signals])

    def xml(self, indent: str = " ") -> str:
        """The ``<interface>`` element of introspection data."""
        lines = [f"{indent}<interface name={quoteattr(self.name)}>"]
        for m in self.methods.values():
            lines.append(f"{indent} <method name={quoteattr(m.name)}>")
            lines += _args(m.in_sig, m.in_names, "in", indent + "  ")
            lines += _args(m.out_sig, m.out_names, "out", indent + "  ")
            lines.append(f"{indent} </method>")
        for s in self.signals.values():
            lines.append(f"{indent} <signal name={quoteattr(s.name)}>")
            lines += _args(s.signature, s.names, None, indent + "  ")
            lines.append(f"{indent} </signal>")
        for p in self.props.values():
            access = "readwrite" if p.set is not None else "read"
            lines.append(f"{indent} <property name={quoteattr(p.name)} "
                         f"type={quoteattr(p.signature)} access=\"{access}\">")
            lines.append(f"{indent}  <annotation name=\"org.freedesktop.DBus.Property."
                         f"EmitsChangedSignal\" value=\"{p.emits}\"/>")
            lines.append(f"{indent} </property>")
        lines.append(f"{indent}</interface>")
        return "\n".join(lines)


def _args(signature: str, names: Sequence[str], direction: str | None,
          indent: str) -> list[str]:
    out = []
    for i, t in enumerate(SignatureTree(signature).types):
        attrs = f"type={quoteattr(t.signature)}"
        if i < len(names):
            attrs = f"name={quoteattr(names[i])} " + attrs
        if direction:
            attrs += f" direction=\"{direction}\""
        out.append(f"{indent}<arg {attrs}/>")
    return out


def _m(name: str, in_sig: str, out_sig: str, in_names: Sequence[str] = (),
       out_names: Sequence[str] = ()) -> Method:
    # The standard interfaces are dispatched by the server itself; these
    # entries exist so that introspection lists them from the same tables.
    return Method(name, in_sig, out_sig, lambda *a: None, in_names, out_names)


PEER = Interface("org.freedesktop.DBus.Peer", methods=[
    _m("Ping", "", ""), _m("GetMachineId", "", "s", (), ("machine_uuid",))])
INTROSPECTABLE = Interface("org.freedesktop.DBus.Introspectable", methods=[
    _m("Introspect", "", "s", (), ("xml_data",))])
PROPERTIES = Interface("org.freedesktop.DBus.Properties", methods=[
    _m("Get", "ss", "v", ("interface_name", "property_name"), ("value",)),
    _m("GetAll", "s", "a{sv}", ("interface_name",), ("props",)),
    _m("Set", "ssv", "", ("interface_name", "property_name", "value"))],
    signals=[Signal("PropertiesChanged", "sa{sv}as",
                    ("interface_name", "changed_properties", "invalidated_properties"))])
STANDARD = (PEER, INTROSPECTABLE, PROPERTIES)

DOCTYPE = ('<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
           ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n')


def introspection_xml(interfaces: Sequence[Interface], children: Iterable[str]) -> str:
    """A whole introspection document: the standard interfaces (when the
    node is an object), ``interfaces`` and the child node names."""
    parts = [DOCTYPE + "<node>"]
    if interfaces:
        parts += [i.xml() for i in (*STANDARD, *interfaces)]
    parts += [f" <node name={quoteattr(c)}/>" for c in sorted(set(children))]
    parts.append("</node>\n")
    return "\n".join(parts)
