"""Surviving an svmgr restart with exactly one copy of every service.

When dynamod-init restarts a crashed svmgr, the services of the old one may
still run (reparented to init). Before starting anything, the new svmgr
combines two sources (see :mod:`dynamod.svmgr.journal`):

* the record: per service its activation, state, invocation id and PIDs;
* a scan of /proc for live processes whose environment carries this
  instance's ``INVOCATION_ID`` prefix and a ``DYNAMOD_SERVICE`` name: that
  finds a process even when svmgr died before recording its spawn.

For each service, the newest invocation that still has a live process is
adopted (the recorded main PID when it is among them, else the oldest
process of that invocation); a oneshot recorded as finished is adopted as
finished (it does not run twice); a process recorded as running that is gone
is started afresh if it is still wanted, except a oneshot: that one ran, and
it waits for its exit status from init (``Orphans``) so that it does not run
twice. Processes of
older invocations of the same service (leftovers) are killed: they belong
to a start that is over. What is not adopted is started as at boot.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

from dynamod.svmgr import states as st
from dynamod.svmgr.journal import process_start_time

if TYPE_CHECKING:
    from dynamod.svmgr.manager import Manager


def scan_processes(instance: str) -> dict[str, dict[str, list[int]]]:
    """Live processes of this manager instance: service -> invocation -> pids."""
    prefix = b"INVOCATION_ID=" + instance.encode()
    found: dict[str, dict[str, list[int]]] = {}
    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if prefix not in env:
            continue
        inv = name = None
        for item in env.split(b"\0"):
            if item.startswith(b"INVOCATION_ID="):
                inv = item[14:].decode("ascii", "replace")
            elif item.startswith(b"DYNAMOD_SERVICE="):
                name = item[16:].decode("utf-8", "replace")
        if inv and name and inv.startswith(instance):
            found.setdefault(name, {}).setdefault(inv, []).append(pid)
    return found


def adopt_previous(manager: Manager) -> list[str]:
    """Adopt the predecessor's services; returns the adopted names."""
    journal = manager.journal
    records = journal.services
    live = scan_processes(journal.instance)
    engine = manager.engine
    adopted: list[str] = []
    for name in sorted(set(records) | set(live)):
        s = engine.services.get(name)
        rec: dict[str, Any] = records.get(name) or {}
        invs = live.get(name, {})
        if s is None or s.load_error is not None:
            _kill_all(invs)
            continue
        if isinstance(rec.get("explicit"), bool):
            s.explicit = rec["explicit"]
        if isinstance(rec.get("held"), bool):
            s.held = rec["held"]
        current = rec.get("inv")
        chosen = current if current in invs else (max(invs) if invs else None)
        _kill_all({i: p for i, p in invs.items() if i != chosen})
        oneshot = s.cfg.type == "oneshot"
        state = rec.get("state")
        if state == st.EXITED and oneshot:
            manager.adopt(name, None, None)
            adopted.append(name)
            continue
        if chosen is not None:
            pids = invs[chosen]
            main = rec.get("main") if chosen == current else None
            if not (isinstance(main, int) and main in pids):
                main = min(pids, key=lambda p: process_start_time(p) or 0)
            pid = rec.get("pid") if chosen == current and isinstance(rec.get("pid"), int) else main
            manager.adopt(name, pid, main, st.STARTING if oneshot else st.RUNNING)
            adopted.append(name)
            continue
        pid = rec.get("main") or rec.get("pid")
        if oneshot and state == "spawning" and isinstance(current, str) and journal.forked(current):
            # svmgr died between the spawn and its record, and the oneshot
            # has finished since: it ran; its exit status is lost with the
            # unrecorded PID. At most once beats twice.
            manager.log(f"{name}: ran while svmgr was restarting; its exit status is unknown, "
                        "counted as done")
            manager.adopt(name, None, None)
            adopted.append(name)
            continue
        if oneshot and isinstance(pid, int) and state in (st.STARTING, st.RUNNING, st.STOPPING):
            # It finished while no svmgr was there: it ran, and init has its
            # status (Orphans); dependents wait for that, it does not run again.
            manager.adopt(name, pid, pid, st.STARTING, gone=True)
            adopted.append(name)
        elif rec:
            # A long-running service whose process is gone is started afresh
            # (as at boot, if it is wanted).
            manager.log(f"{name}: recorded as {state or 'unknown'}"
                        + (f" (pid {pid})" if pid else "") + ", no process left")
    for name in list(records):
        if name not in engine.services:
            journal.remove(name)
    journal.clear_markers()
    if adopted:
        manager.log(f"adopted from the previous svmgr: {', '.join(sorted(adopted))}")
    manager.pump()
    return adopted


def _kill_all(invs: dict[str, list[int]]) -> None:
    for pids in invs.values():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
