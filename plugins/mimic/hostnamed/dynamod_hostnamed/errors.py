"""The errors a setter answers, carrying systemd's D-Bus error names.

The file and validation modules raise these; the D-Bus side turns them into
error replies unchanged, so the real clients print the message.
"""

from __future__ import annotations

INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
FAILED = "org.freedesktop.DBus.Error.Failed"
NOT_SUPPORTED = "org.freedesktop.DBus.Error.NotSupported"
AUTOMATIC_TIME_SYNC = "org.freedesktop.timedate1.AutomaticTimeSyncEnabled"
NO_NTP_SUPPORT = "org.freedesktop.timedate1.NoNTPSupport"


class BusError(Exception):
    """A D-Bus error reply: ``name`` is the error name, the text its message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.text = message


def invalid(message: str) -> BusError:
    """``InvalidArgs`` with ``message``: what systemd answers a bad setter argument."""
    return BusError(INVALID_ARGS, message)
