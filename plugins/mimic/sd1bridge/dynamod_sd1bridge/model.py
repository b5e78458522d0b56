"""What the bridge knows of dynamod-svmgr, and how it asks.

One control connection, subscribed to state changes and jobs. Unit objects
are built from a fresh ``ServiceStatus`` on every call (a round trip is well
under a millisecond), so what systemctl prints is never stale. Kept locally
only what svmgr does not report: the state timestamps seen since the bridge
started, the last main PID, and the reverse dependencies (RequiredBy,
WantedBy), which need every service's map.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dynamod.ipc.aclient import AsyncClient
from dynamod.ipc.client import ConnectError, ProtocolError, RemoteError

from .mapping import SERVICE_STATES

log = logging.getLogger("dynamod.sd1bridge")

_ALIVE = {"starting", "waiting-ready", "running", "stopping"}


class Unavailable(Exception):
    """svmgr cannot be reached; the message says where."""


@dataclass
class Times:
    """State timestamps of one service (Unix time, 0 = not seen)."""

    inactive_exit: float = 0.0
    active_enter: float = 0.0
    active_exit: float = 0.0
    inactive_enter: float = 0.0
    exec_start: float = 0.0
    exec_exit: float = 0.0
    last_main_pid: int = 0

    def record(self, old: str, new: str, at: float, pid: int | None) -> None:
        was, now = SERVICE_STATES.get(old, ("inactive",))[0], SERVICE_STATES.get(new, ("inactive",))[0]
        down = ("inactive", "failed")
        if was in down and now not in down:
            self.inactive_exit = at
        if now == "active" and was != "active":
            self.active_enter = at
        if was == "active" and now != "active":
            self.active_exit = at
        if now in down and was not in down:
            self.inactive_enter = at
        if new == "starting":
            self.exec_start = at
        if old in _ALIVE and new not in _ALIVE:
            self.exec_exit = at
        if pid:
            self.last_main_pid = pid


@dataclass
class Listeners:
    state: list[Callable[[str, dict], None]] = field(default_factory=list)
    job_new: list[Callable[[dict], None]] = field(default_factory=list)
    job_removed: list[Callable[[dict], None]] = field(default_factory=list)
    reconnected: list[Callable[[], None]] = field(default_factory=list)


class Model:
    def __init__(self, socket_path: str, config_dir: str) -> None:
        self.socket_path = socket_path
        self.config_dir = config_dir
        self.client: AsyncClient | None = None
        self.times: dict[str, Times] = {}
        self.deps: dict[str, dict[str, list[str]]] = {}  # name -> {requires, wants}
        self.load_errors: set[str] = set()  # services whose file was refused
        self.jobs: dict[int, dict] = {}  # running jobs, by svmgr id
        self.failed_jobs = 0
        # Bus job ids stay unique across svmgr restarts (svmgr counts from 1
        # again): each connection's ids are offset past every id handed out.
        self.job_base = 0
        self.max_job = 0
        self.listen = Listeners()
        self.started_at = time.time()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- connection --------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_connected(self, timeout: float | None = None) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self._connected.is_set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.client is not None:
            await self.client.close()

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                client = await AsyncClient.connect(self.socket_path, timeout=30.0)
            except ConnectError as exc:
                log.debug("svmgr not reachable: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            try:
                await client.hello("dynamod-sd1bridge")
                await client.request("Subscribe", {"jobs": True})
                await self._load(client)
            except (ProtocolError, RemoteError, TimeoutError, OSError) as exc:
                log.warning("svmgr at %s: %s", self.socket_path, exc)
                await client.close()
                await asyncio.sleep(delay)
                continue
            self.job_base = self.max_job
            self.client = client
            self._connected.set()
            log.info("connected to dynamod-svmgr at %s", self.socket_path)
            for cb in self.listen.reconnected:
                cb()
            async for ev in client.events():
                self._event(ev.type, ev.body)
            self._connected.clear()
            self.client = None
            log.warning("lost the connection to dynamod-svmgr; reconnecting")
            # Jobs of an svmgr that went away never end there: end them
            # here, or a waiting systemctl hangs forever.
            for job in list(self.jobs.values()):
                self._event("JobRemoved", {**job, "result": "canceled",
                                           "reason": "dynamod-svmgr went away"})
            await client.close()

    async def _load(self, client: AsyncClient) -> None:
        services = await _list_services(client)
        sem = asyncio.Semaphore(16)

        async def one(name: str) -> None:
            async with sem:
                with contextlib.suppress(RemoteError):
                    self.note(name, (await client.request("ServiceStatus", {"name": name})).body["service"])

        await asyncio.gather(*(one(s["name"]) for s in services))
        gone = set(self.deps) - {s["name"] for s in services}
        for name in gone:
            self.deps.pop(name, None)
        jobs = (await client.request("ListJobs")).body["jobs"]
        self.jobs = {j["id"]: j for j in jobs}

    def _event(self, kind: str, body: dict) -> None:
        try:
            if kind == "ServiceStateChanged":
                name = body["name"]
                svc = body.get("service")
                pid = (svc or {}).get("main_pid") or (svc or {}).get("pid")
                self.times.setdefault(name, Times()).record(body["old"], body["new"], body["time"], pid)
                if svc is not None:
                    self.note(name, svc)
                for cb in self.listen.state:
                    cb(name, svc or {"name": name, "state": body["new"], "reason": body.get("reason", "")})
            elif kind == "JobNew":
                self.jobs[body["id"]] = {**body, "state": "running"}
                for cb in self.listen.job_new:
                    cb(body)
            elif kind == "JobRemoved":
                self.jobs.pop(body["id"], None)
                if body.get("result") not in ("done", "skipped"):
                    self.failed_jobs += 1
                for cb in self.listen.job_removed:
                    cb(body)
        except Exception:
            log.exception("handling svmgr event %s %r", kind, body)

    def note(self, name: str, svc: dict) -> None:
        """Remember what a full service map says that must outlive it."""
        self.deps[name] = {"requires": list(svc.get("requires") or ()),
                           "wants": list(svc.get("wants") or ())}
        if svc.get("load_error"):
            self.load_errors.add(name)
        else:
            self.load_errors.discard(name)
        pid = svc.get("main_pid") or svc.get("pid")
        if pid:
            self.times.setdefault(name, Times()).last_main_pid = pid

    def bus_job_id(self, svmgr_id: int) -> int:
        bus_id = svmgr_id + self.job_base
        self.max_job = max(self.max_job, bus_id)
        return bus_id

    def svmgr_job_id(self, bus_id: int) -> int | None:
        svmgr_id = bus_id - self.job_base
        return svmgr_id if svmgr_id > 0 else None

    def required_by(self, name: str, kind: str) -> list[str]:
        return sorted(other for other, d in self.deps.items() if name in d.get(kind, ()))

    # -- requests ----------------------------------------------------------

    async def request(self, type: str, body: dict | None = None) -> Any:
        """The body of svmgr's response; RemoteError for an Error."""
        client = self.client
        if client is None and not await self.wait_connected(5.0):
            raise Unavailable(f"dynamod-svmgr is not reachable at {self.socket_path}")
        client = self.client
        assert client is not None
        try:
            return (await client.request(type, body or {})).body
        except ProtocolError as exc:
            raise Unavailable(f"dynamod-svmgr at {self.socket_path}: {exc}") from exc

    async def service(self, name: str) -> dict | None:
        """The fresh service map, or None if svmgr has no such service."""
        try:
            svc = (await self.request("ServiceStatus", {"name": name}))["service"]
        except RemoteError as exc:
            if exc.code == "unknown-service":
                self.deps.pop(name, None)
                return None
            raise
        self.note(name, svc)
        return svc

    async def services(self) -> list[dict]:
        client = self.client
        if client is None and not await self.wait_connected(5.0):
            raise Unavailable(f"dynamod-svmgr is not reachable at {self.socket_path}")
        assert self.client is not None
        return await _list_services(self.client)

    async def tree(self) -> dict:
        return (await self.request("TreeStatus"))["root"]


async def _list_services(client: AsyncClient) -> list[dict]:
    out: list[dict] = []
    offset: int | None = 0
    while offset is not None:
        body = (await client.request("ListServices", {"offset": offset})).body
        out += body["services"]
        offset = body.get("next")
    return out


def walk_tree(root: dict) -> dict[str, tuple[dict, str | None]]:
    """supervisor name -> (node, parent name) for every supervisor."""
    out: dict[str, tuple[dict, str | None]] = {}
    stack: list[tuple[dict, str | None]] = [(root, None)]
    while stack:
        node, parent = stack.pop()
        out[node["name"]] = (node, parent)
        stack += [(c, node["name"]) for c in node.get("children", ()) if c.get("kind") == "supervisor"]
    return out


def service_parents(root: dict) -> dict[str, str]:
    """service name -> supervisor name."""
    out: dict[str, str] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        for c in node.get("children", ()):
            if c.get("kind") == "supervisor":
                stack.append(c)
            else:
                out[c["name"]] = node["name"]
    return out


Callback = Callable[..., Awaitable[None] | None]
