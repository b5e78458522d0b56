"""D-Bus error names the mimic services answer with.

Raise :class:`dbus_fast.errors.DBusError` (re-exported here as ``DBusError``)
from a method handler, property getter, setter or resolver: the layer turns it
into an error reply with that name and text. Any other exception is logged
with its traceback and answered as ``org.freedesktop.DBus.Error.Failed``
without the traceback.
"""

from __future__ import annotations

from dbus_fast.errors import DBusError

__all__ = [
    "ACCESS_DENIED",
    "FAILED",
    "FILE_NOT_FOUND",
    "INTERACTIVE_AUTHORIZATION_REQUIRED",
    "INVALID_ARGS",
    "NOT_SUPPORTED",
    "PROPERTY_READ_ONLY",
    "UNKNOWN_INTERFACE",
    "UNKNOWN_METHOD",
    "UNKNOWN_OBJECT",
    "UNKNOWN_PROPERTY",
    "DBusError",
    "access_denied",
    "invalid_args",
]

_STD = "org.freedesktop.DBus.Error."
FAILED = _STD + "Failed"
ACCESS_DENIED = _STD + "AccessDenied"
INTERACTIVE_AUTHORIZATION_REQUIRED = _STD + "InteractiveAuthorizationRequired"
INVALID_ARGS = _STD + "InvalidArgs"
NOT_SUPPORTED = _STD + "NotSupported"
FILE_NOT_FOUND = _STD + "FileNotFound"
UNKNOWN_METHOD = _STD + "UnknownMethod"
UNKNOWN_OBJECT = _STD + "UnknownObject"
UNKNOWN_INTERFACE = _STD + "UnknownInterface"
UNKNOWN_PROPERTY = _STD + "UnknownProperty"
PROPERTY_READ_ONLY = _STD + "PropertyReadOnly"


def access_denied(text: str = "Access denied") -> DBusError:
    """``org.freedesktop.DBus.Error.AccessDenied`` (systemctl: exit 4)."""
    return DBusError(ACCESS_DENIED, text)


def invalid_args(text: str) -> DBusError:
    """``org.freedesktop.DBus.Error.InvalidArgs`` with a message naming what is wrong."""
    return DBusError(INVALID_ARGS, text)
