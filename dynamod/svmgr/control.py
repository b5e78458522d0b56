"""Control-socket requests: what each message does to the manager.

The server (:mod:`dynamod.ipc.server`) owns framing and validation; this
module owns meaning and the permission rule: root and the user the manager
runs as may do everything, other users may only read.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from dynamod.config.model import ConfigError, SystemConfig
from dynamod.ipc.schema import READ_ONLY_REQUESTS, Message, error, event, response
from dynamod.ipc.server import Connection
from dynamod.svmgr.bootrecord import BootRecord
from dynamod.svmgr.manager import Manager, OperationFailed
from dynamod.svmgr.paging import PAGE_BYTES, page
from dynamod.svmgr.unitverbs import UnitVerbs

LIST_FIELDS = ("name", "state", "type", "supervisor", "pid", "since", "reason", "explicit", "restarts", "description")


def describe_reload(result: dict[str, list[str]]) -> str:
    """One line for the log: ``added a, b; changed c`` or ``nothing changed``."""
    parts = [f"{k} {', '.join(v)}" for k, v in result.items() if v and k in ("added", "removed", "changed")]
    return "; ".join(parts) or "nothing changed"


class Control(UnitVerbs, BootRecord):
    def __init__(
        self,
        manager: Manager,
        reload_config: Callable[[], SystemConfig],
        request_shutdown: Callable[[str], Awaitable[None]],
        config_dir: str | None = None,
    ) -> None:
        self.manager = manager
        self.config_dir = config_dir  # where enable/mask/edit write (unitverbs.py)
        self.reload_config = reload_config
        self.request_shutdown = request_shutdown
        self.subscribers: set[Connection] = set()
        self.job_subscribers: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        manager.listeners.append(self._broadcast)
        manager.publisher.job_listeners.append(self._broadcast_job)

    def _broadcast_job(self, kind: str, job: Any) -> None:
        if not self.job_subscribers:
            return
        if kind == "new":
            msg = event("JobNew", {"id": job.id, "unit": job.unit, "type": job.type})
        else:
            msg = event("JobRemoved", job.report())
        for conn in list(self.job_subscribers):
            if conn.closed:
                self.job_subscribers.discard(conn)
            else:
                conn.send(msg)

    def _broadcast(self, ev: dict[str, Any]) -> None:
        if not self.subscribers:
            return
        s = self.manager.services.get(ev["name"])
        body = dict(ev)
        if s is not None:
            body["service"] = s.info()
        msg = event("ServiceStateChanged", body)
        for conn in list(self.subscribers):
            if conn.closed:
                self.subscribers.discard(conn)
            else:
                conn.send(msg)

    def allowed(self, conn: Connection) -> bool:
        return conn.peer_uid in (0, os.getuid())

    async def handle(self, conn: Connection, msg: Message) -> Message | None:
        if msg.kind != "request":
            return None
        if msg.type not in READ_ONLY_REQUESTS and not self.allowed(conn):
            return error(
                msg,
                "permission-denied",
                f"{msg.type} needs root (you are uid {conn.peer_uid}); other users may only read",
            )
        fn = getattr(self, "do_" + msg.type, None)
        if fn is None:
            return error(msg, "bad-request", f"request {msg.type} is not supported by this server")
        try:
            return await fn(conn, msg)
        except KeyError as exc:
            return error(msg, "unknown-service", f"no such service: {exc.args[0]}")
        except OperationFailed as exc:
            s = self.manager.services.get(msg.body.get("name", ""))
            return error(msg, "failed", str(exc), [s.reason] if s is not None and s.reason else None)

    def _info(self, name: str) -> dict[str, Any]:
        return self.absolute_paths(self.manager.status_of(self.manager.get(name)))

    async def do_ServiceStatus(self, conn: Connection, msg: Message) -> Message:
        return response(msg, "ServiceInfo", {"service": self._info(msg.body["name"])})

    async def do_ListServices(self, conn: Connection, msg: Message) -> Message:
        """One page of services (compact entries); ``next`` is the offset of
        the following page, absent on the last one."""
        names = sorted(self.manager.services)

        def entry(name: str) -> dict[str, Any]:
            info = self.manager.services[name].info()
            return {k: info[k] for k in LIST_FIELDS}

        services, nxt = page(names, int(msg.body.get("offset", 0) or 0), entry)
        body: dict[str, Any] = {"services": services, "total": len(names)}
        if nxt is not None:
            body["next"] = nxt
        return response(msg, "ServiceList", body)

    async def do_TreeStatus(self, conn: Connection, msg: Message) -> Message:
        return response(msg, "Tree", {"root": self.manager.tree()})

    async def do_GetServiceByPid(self, conn: Connection, msg: Message) -> Message:
        return response(msg, "ServiceByPid", {"name": self.manager.service_by_pid(msg.body["pid"])})

    async def do_GetLogs(self, conn: Connection, msg: Message) -> Message:
        s = self.manager.get(msg.body["name"])
        lines = self.manager.handle(s.name).log_buffer.tail(msg.body.get("lines"))
        # Newest lines win when the buffer would not fit into one frame.
        out: list[tuple[float, str]] = []
        size = 0
        for ts, text in reversed(lines):
            size += len(text.encode()) + 16
            if size > PAGE_BYTES:
                break
            out.append((ts, text))
        out.reverse()
        return response(msg, "Logs", {"name": s.name, "lines": [[t, x] for t, x in out]})

    async def do_Subscribe(self, conn: Connection, msg: Message) -> Message:
        conn.subscribed = True
        self.subscribers.add(conn)
        conn.on_close.append(self.subscribers.discard)
        if msg.body.get("jobs"):
            self.job_subscribers.add(conn)
            conn.on_close.append(self.job_subscribers.discard)
        return response(msg, "Ack", {"message": "subscribed"})

    async def _job(self, msg: Message, jtype: str) -> Message:
        body = msg.body
        job = await self.manager.run_job(body["name"], jtype, body.get("mode") or "replace",
                                         block=not body.get("no_block"))
        s = self.manager.services.get(job.unit)
        info = self.manager.status_of(s) if s is not None else {"name": job.unit, "state": "removed"}
        report = job.report() if job.ended else {**job.summary(), "result": None}
        if job.ended and job.result not in ("done", "skipped"):
            from dynamod.svmgr.manager import _job_message

            err = error(msg, "failed", _job_message(job), [s.reason] if s is not None and s.reason else None)
            err.body["job"] = report
            err.body["service"] = info
            return err
        return response(msg, "ServiceInfo", {"service": info, "job": report})

    async def do_StartService(self, conn: Connection, msg: Message) -> Message:
        return await self._job(msg, "start")

    async def do_StopService(self, conn: Connection, msg: Message) -> Message:
        return await self._job(msg, "stop")

    async def do_RestartService(self, conn: Connection, msg: Message) -> Message:
        return await self._job(msg, "restart")

    async def do_TryRestartService(self, conn: Connection, msg: Message) -> Message:
        return await self._job(msg, "try-restart")

    async def do_ReloadOrRestartService(self, conn: Connection, msg: Message) -> Message:
        return await self._job(msg, "reload-or-restart")

    async def do_ListJobs(self, conn: Connection, msg: Message) -> Message:
        jobs = [j.summary() for j in sorted(self.manager.engine.jobs.values(), key=lambda j: j.id)]
        return response(msg, "JobList", {"jobs": jobs})

    async def do_CancelJob(self, conn: Connection, msg: Message) -> Message:
        if not self.manager.cancel_job(msg.body["id"]):
            return error(msg, "failed", f"no such job: {msg.body['id']}")
        return response(msg, "Ack", {"message": f"job {msg.body['id']} canceled"})

    async def do_Reload(self, conn: Connection, msg: Message) -> Message:
        try:
            cfg = self.reload_config()
        except ConfigError as exc:
            errors = [str(d) for d in exc.diagnostics if d.severity == "error"]
            return error(msg, "failed", f"configuration has {len(errors)} error(s); nothing changed", errors)
        result = await self.manager.reload(cfg)
        self.manager.log(f"reloaded (requested by pid {conn.peer_pid}): {describe_reload(result)}")
        result["warnings"] = [str(d) for d in cfg.warnings]
        return response(msg, "ReloadResult", result)

    async def do_Shutdown(self, conn: Connection, msg: Message) -> Message:
        kind = msg.body["kind"]
        task = self.manager.loop.create_task(self.request_shutdown(kind))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return response(msg, "Ack", {"message": f"{kind} started"})
