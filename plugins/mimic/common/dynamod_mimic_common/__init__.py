"""dynamod systemd-mimic: the low-level D-Bus object layer shared by the
mimic services (systemd1, login1, hostname1, timedate1, locale1).

See plugins/mimic/common/README.md for how a service uses it.
"""

from .bus import BusUnavailable, claim_name, connect_system_bus, system_bus_address
from .errors import DBusError
from .interface import Interface, Method, Prop, Signal
from .paths import child_path, escape_label, unescape_label
from .peer import PeerServer, connect_peer
from .server import CallContext, Link, Node, ObjectServer

__all__ = [
    "BusUnavailable",
    "CallContext",
    "DBusError",
    "Interface",
    "Link",
    "Method",
    "Node",
    "ObjectServer",
    "PeerServer",
    "Prop",
    "Signal",
    "child_path",
    "claim_name",
    "connect_peer",
    "connect_system_bus",
    "escape_label",
    "system_bus_address",
    "unescape_label",
]
