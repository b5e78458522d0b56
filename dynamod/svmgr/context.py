"""The :class:`dynamod.api.ServiceContext` plugins and detectors receive.

One per service for the life of the manager (plugins may key their own state
by it). Reading is direct; everything that changes the service's life cycle
(``fail``, ``set_main_pid``, ``extend_timeout``) is queued as an event for the
engine and the manager is pumped, so a plugin never runs a transition in the
middle of another one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dynamod.config.model import ServiceConfig
from dynamod.svmgr.logbuf import LogBuffer

if TYPE_CHECKING:
    from dynamod.svmgr.manager import Manager
    from dynamod.svmgr.records import Service


class ServiceHandle:
    def __init__(self, manager: Manager, name: str) -> None:
        self._manager = manager
        self._name = name
        self.log_buffer = LogBuffer()
        self.control_pids: set[int] = set()

    @property
    def manager(self) -> Manager:
        return self._manager

    @property
    def _rec(self) -> Service | None:
        return self._manager.engine.services.get(self._name)

    # -- ServiceContext ----------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def config(self) -> ServiceConfig:
        rec = self._rec
        assert rec is not None, f"service {self._name} is gone"
        return rec.cfg

    cfg = config

    @property
    def runtime_dir(self) -> str:
        return self._manager.runtime_dir

    @property
    def state(self) -> str:
        rec = self._rec
        return rec.state if rec is not None else "removed"

    @property
    def main_pid(self) -> int | None:
        rec = self._rec
        return rec.main_pid if rec is not None else None

    @property
    def pid(self) -> int | None:
        rec = self._rec
        return rec.pid if rec is not None else None

    @property
    def pids(self) -> set[int]:
        rec = self._rec
        out = set(self.control_pids)
        if rec is not None:
            out |= rec.pids
        return out

    def set_main_pid(self, pid: int) -> None:
        self._manager.engine.on_main_pid(self._name, pid)
        self._manager.pump()

    def set_status_text(self, text: str) -> None:
        rec = self._rec
        if rec is not None:
            rec.status_text = text

    def set_substate(self, text: str) -> None:
        rec = self._rec
        if rec is not None:
            rec.substate = text

    def log(self, message: str) -> None:
        self.log_buffer.append(f"[dynamod] {message}")
        self._manager.logd.record(self._name, message)

    def fail(self, reason: str) -> None:
        self._manager.engine.on_fail(self._name, reason)
        self._manager.pump()

    def owns_pid(self, pid: int) -> bool:
        return pid in self.pids or self._manager.service_by_pid(pid) == self._name

    def extend_timeout(self, seconds: float) -> None:
        self._manager.engine.on_extend_timeout(self._name, seconds)
        self._manager.pump()

    async def run_helper(self, argv: Sequence[str], timeout: float) -> int | None:
        from dynamod.svmgr.helpers import run_helper

        return await run_helper(self, argv, timeout)

    def __repr__(self) -> str:
        return f"<service {self._name}>"
