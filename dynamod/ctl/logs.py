"""``dynamodctl logs`` through dynamod-logd (docs/logd.md).

logd's query socket sits next to the control socket (``logd.sock`` in the
same directory; ``$DYNAMOD_LOGD_SOCKET`` overrides it). When logd is not
running, :func:`dynamod.ctl.commands.logs` falls back to the lines svmgr
keeps in memory.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from dynamod.ctl import render
from dynamod.ctl.exits import OK, CtlError
from dynamod.ctl.wire import Conn

FOLLOW_INTERVAL = 0.05  # `-f` asks logd this often for records after the last one
MANAGER = "dynamod-svmgr"


def logd_socket(control_socket: str) -> str:
    return os.environ.get("DYNAMOD_LOGD_SOCKET") or os.path.join(
        os.path.dirname(control_socket) or ".", "logd.sock")


def connect(control_socket: str) -> Conn | None:
    """A connection to logd, or None when it is not running."""
    path = logd_socket(control_socket)
    try:
        return Conn(path, timeout=30.0)
    except CtlError:
        return None


def line(rec: dict) -> list:
    """A record as the ``[time, text]`` pair render.log_lines prints; the
    manager's records about the service read ``[dynamod] ...`` as in
    svmgr's own buffer."""
    msg = rec.get("message", b"")
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    if rec.get("service") == MANAGER:
        text = "[dynamod] " + text
    return [rec.get("time", 0.0), text]


def recent(conn: Conn, name: str, lines: int) -> list[list] | None:
    """The newest ``lines`` of ``name`` as ``[time, text]`` pairs (what
    ``status`` shows); None when logd fails to answer."""
    try:
        body = conn.request("QueryLogs", "LogRecords", {"names": [name], "lines": lines})
    except CtlError:
        return None
    return [line(r) for r in body.get("records") or []]


def show(conn: Conn, name: str, lines: int, follow: bool, style: render.Style,
         check_name: Callable[[], object]) -> int:
    """Print the newest ``lines`` records of ``name`` (and, with ``follow``,
    every new one). ``check_name`` raises CtlError for a service svmgr does
    not know; it is called when logd has nothing for the name."""
    body = conn.request("QueryLogs", "LogRecords", {"names": [name], "lines": max(0, lines)})
    records = body.get("records") or []
    if not records and lines > 0:
        check_name()
    _warn_unstored(body)
    # A reply holds one frame's worth: older pages until there are `lines`.
    while records and len(records) < lines:
        older = conn.request("QueryLogs", "LogRecords", {"names": [name], "lines": lines - len(records),
                                                         "before": records[0]["seq"]}).get("records")
        if not older:
            break
        records = older + records
    for out in render.log_lines([line(r) for r in records], style):
        sys.stdout.write(out + "\n")
    if not follow:
        return OK
    last = body.get("last", 0)
    try:
        while True:
            sys.stdout.flush()
            time.sleep(FOLLOW_INTERVAL)
            body = conn.request("QueryLogs", "LogRecords", {"names": [name], "after": last})
            for out in render.log_lines([line(r) for r in body.get("records") or []], style):
                sys.stdout.write(out + "\n")
            last = body.get("last", last)
    except KeyboardInterrupt:
        return 130


def _warn_unstored(body: dict) -> None:
    n = body.get("unstored") or 0
    if n:
        sys.stdout.flush()
        sys.stderr.write(f"dynamodctl: dynamod-logd could not store {n} records on disk "
                         "(disk full or read-only); they are kept in its memory only\n")
