"""The one place that tells the outside world what the engine did.

After each engine pass the manager hands the pass's state changes, job
events and alerts here, in order: svmgr's log, the state record (journal),
the control socket's subscribers, the ``dynamod_service_state_changed``
hook, and the control requests waiting for their job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dynamod.svmgr import states as st

if TYPE_CHECKING:
    from dynamod.svmgr.engine import Change
    from dynamod.svmgr.jobs import Job
    from dynamod.svmgr.manager import Manager

Listener = Callable[[dict[str, Any]], None]
JobListener = Callable[[str, "Job"], None]


class Publisher:
    def __init__(self, manager: Manager) -> None:
        self.m = manager
        self.listeners: list[Listener] = []
        self.job_listeners: list[JobListener] = []
        self.job_futures: dict[int, list[asyncio.Future[Any]]] = {}
        self.on_root_failure: Callable[[str], None] | None = None

    def publish(self, changes: list[Change], job_events: list[tuple[str, Job]],
                alerts: list[tuple[str, str]]) -> None:
        m = self.m
        engine = m.engine
        touched: set[str] = set()
        # Most systems have no plugin watching every transition: skip the
        # hook call (and the handle it needs) for each of them then.
        state_hook = None
        if m.plugins is not None:
            state_hook = m.plugins.hook.dynamod_service_state_changed
            if not state_hook.get_hookimpls():
                state_hook = None
        for name, old, new, reason, when in changes:
            touched.add(name)
            m.log(f"{name}: {old} -> {new}" + (f" ({reason})" if reason else ""))
            s = engine.services.get(name)
            self._record(name, s, new)
            event = {"name": name, "old": old, "new": new, "reason": reason, "time": when}
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception as exc:
                    m.log(f"state listener failed: {exc}")
            if state_hook is not None and s is not None:
                try:
                    state_hook(service=m.handle(name), old=old, new=new, reason=reason)
                except Exception as exc:
                    m.log(f"plugin hook dynamod_service_state_changed failed: {type(exc).__name__}: {exc}")
        for kind, job in job_events:
            touched.add(job.unit)
            if kind == "removed":
                m.log(f"job {job.id} ({job.type} {job.unit}): {job.result}"
                      + (f" ({job.reason})" if job.reason and job.result != "done" else ""))
            for jl in list(self.job_listeners):
                try:
                    jl(kind, job)
                except Exception as exc:
                    m.log(f"job listener failed: {exc}")
            if kind == "removed":
                for fut in self.job_futures.pop(job.id, []):
                    if not fut.done():
                        fut.set_result(job)
        for name in touched:
            s = engine.services.get(name)
            if s is not None:
                m.journal.update(name, explicit=s.explicit, held=s.held)
        for kind, reason in alerts:
            if kind == "root-failed" and self.on_root_failure is not None:
                try:
                    self.on_root_failure(reason)
                except Exception as exc:
                    m.log(f"root failure action failed: {exc}")

    def _record(self, name: str, s: Any, new: str) -> None:
        journal = self.m.journal
        if s is None:
            journal.remove(name)
            return
        if new == st.RUNNING and s.main_pid is not None:
            journal.update(name, state=new, pid=s.pid, main=s.main_pid)
        elif new in st.DOWN or new in (st.PENDING, st.RESTARTING):
            journal.update(name, state=new, pid=None, main=None)
        else:
            journal.update(name, state=new)
