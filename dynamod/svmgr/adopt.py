"""Surviving an svmgr restart without second copies of services.

While it runs, svmgr keeps a record of which services are up and with which
main PID (see :mod:`dynamod.svmgr.persist`). When dynamod-init restarts a
crashed svmgr, the services of the old one are still running (reparented to
init). The new svmgr reads the record before starting anything and adopts
every service whose recorded process is still the same process (same PID and
start time); finished oneshots are adopted as finished, so they do not run
twice. Exits of adopted processes are reaped by init, which forwards their
statuses (``Orphans``); a pidfd tells svmgr when to look.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from dynamod.svmgr import persist
from dynamod.svmgr import states as st

if TYPE_CHECKING:
    from dynamod.svmgr.manager import Manager

SAVE_DELAY = 0.2
# How long to wait for init's Orphans message after an adopted process is gone.
STATUS_GRACE = 2.0


class StateKeeper:
    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self._scheduled = False
        manager.listeners.append(self._changed)

    def _changed(self, event: dict[str, Any]) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.manager.loop.call_later(SAVE_DELAY, self.save)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, s in self.manager.services.items():
            if s.state == st.EXITED:
                out[name] = {"state": st.EXITED}
            elif s.state == st.RUNNING and s.main_pid is not None:
                start = persist.process_start_time(s.main_pid)
                if start is not None:
                    out[name] = {"state": st.RUNNING, "pid": s.pid, "main_pid": s.main_pid, "start": start}
        return out

    def save(self) -> None:
        self._scheduled = False
        try:
            persist.save(self.manager.runtime_dir, self.snapshot())
        except OSError as exc:
            self.manager.log(f"cannot record service state: {exc}")

    def adopt(self) -> list[str]:
        """Adopt the predecessor's services; returns the adopted names."""
        adopted: list[str] = []
        for name, rec in persist.load(self.manager.runtime_dir).items():
            s = self.manager.services.get(name)
            if s is None or not isinstance(rec, dict):
                continue
            if rec.get("state") == st.EXITED and s.cfg.type == "oneshot":
                self.manager.adopt(s, None, None)
                adopted.append(name)
                continue
            main = rec.get("main_pid")
            if rec.get("state") != st.RUNNING or not isinstance(main, int):
                continue
            if main in self.manager.reaper.unknown or persist.process_start_time(main) != rec.get("start"):
                continue  # exited meanwhile, or the PID was reused
            pid = rec.get("pid") if isinstance(rec.get("pid"), int) else main
            self.manager.adopt(s, pid, main)
            self._watch(s, main)
            adopted.append(name)
        if adopted:
            self.manager.log(f"adopted from the previous svmgr: {', '.join(sorted(adopted))}")
        return adopted

    def _watch(self, s: Any, pid: int) -> None:
        loop = self.manager.loop
        gen = s.generation
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            loop.call_soon(self._gone, s, gen, pid, 0.0)
            return

        def readable() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self._gone(s, gen, pid, 0.0)

        loop.add_reader(fd, readable)

    def _gone(self, s: Any, gen: int, pid: int, waited: float) -> None:
        """The adopted process is gone; its status comes from init."""
        status = self.manager.reaper.unknown.pop(pid, None)
        if status is None and waited < STATUS_GRACE:
            self.manager.loop.call_later(0.1, self._gone, s, gen, pid, waited + 0.1)
            return
        # Unknown status (init never told us): count it as a failure.
        self.manager.adopted_exit(s, gen, pid, 1 << 8 if status is None else status)
