"""The Manager object (/org/freedesktop/systemd1) and job objects."""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import logging
import os
import platform
from typing import Any

from dynamod_mimic_common import (
    CallContext,
    DBusError,
    Interface,
    Method,
    Node,
    ObjectServer,
    Prop,
    Signal,
)
from dynamod_mimic_common import errors as E

from dynamod.ipc.client import RemoteError

from . import __version__, unitfiles
from . import mapping as M
from .errors import (
    JOB_TYPE_NOT_APPLICABLE,
    NO_SUCH_JOB,
    NO_SUCH_UNIT,
    NO_UNIT_FOR_PID,
    UNIT_MASKED,
    no_such_unit,
    translate,
)
from .model import Model, service_parents, walk_tree
from .names import (
    JOB_PREFIX,
    MANAGER_PATH,
    UNIT_PREFIX,
    job_path,
    service_unit,
    split_unit,
    supervisor_unit,
    unit_from_label,
    unit_path,
    unit_type,
)
from .units import (
    SERVICE,
    UNIT,
    MissingUnit,
    ServiceUnit,
    SliceUnit,
    UnitBase,
    interfaces_of,
    relative_cgroup,
)

log = logging.getLogger("dynamod.sd1bridge")

SYSTEMD_VERSION = "252"
SHUTDOWN_TARGETS = {"poweroff.target": "poweroff", "reboot.target": "reboot", "halt.target": "halt"}
# systemd job modes dynamod can honour, and what svmgr calls them.
JOB_MODES = {"replace": "replace", "replace-irreversibly": "replace", "flush": "replace",
             "fail": "fail"}
UNSUPPORTED_MODES = {"isolate", "ignore-dependencies", "ignore-requirements", "triggering",
                     "restart-dependencies"}
# Bridge-made jobs (shutdown targets) get ids no svmgr job reaches.
_LOCAL_JOB_IDS = itertools.count(1 << 31)

_ARCH = {"x86_64": "x86-64", "aarch64": "arm64", "i686": "x86", "i386": "x86", "armv7l": "arm",
         "ppc64le": "ppc64-le", "s390x": "s390x", "riscv64": "riscv64"}


def _boot_time() -> float:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _pid1_start() -> float:
    try:
        with open("/proc/1/stat") as f:
            stat = f.read()
        ticks = int(stat[stat.rfind(")") + 2:].split()[19])
        return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class ManagerView:
    """A snapshot of what the Manager's properties say."""

    def __init__(self, bridge: Bridge, services: list[dict] | None) -> None:
        self.bridge = bridge
        model = bridge.model
        self.reachable = services is not None
        services = services or []
        self.n_names = len(services) + len(bridge.supervisors)
        self.n_failed = sum(1 for s in services if s.get("state") == "failed")
        self.n_jobs = len(model.jobs)
        self.n_failed_jobs = model.failed_jobs
        if not self.reachable:
            self.state = "maintenance"
        elif any(s.get("state") in ("stopping",) for s in services) and bridge.stopping:
            self.state = "stopping"
        elif self.n_failed:
            self.state = "degraded"
        elif any(s.get("state") in ("pending", "starting", "waiting-ready") for s in services):
            self.state = "starting"
        else:
            self.state = "running"
        self.userspace = bridge.userspace_ts


def _row(unit: str, description: str, load: str, active: str, sub: str,
         job: tuple[int, str, str] = (0, "", "/")) -> tuple:
    return (unit, description, load, active, sub, "", unit_path(unit), job[0], job[1], job[2])


def _mono_of(t: float) -> int:
    from .units import _mono

    return _mono(t)


class Bridge:
    """systemd1's objects on an ObjectServer, backed by a Model of svmgr."""

    def __init__(self, server: ObjectServer, model: Model) -> None:
        self.server = server
        self.model = model
        self.supervisors: dict[str, tuple[dict, str | None]] = {}
        self.stopping = False
        self.userspace_ts = _pid1_start()
        server.add_computed(MANAGER_PATH, self._manager_node)
        server.add_subtree(UNIT_PREFIX, self._unit_node)
        server.add_subtree(JOB_PREFIX, self._job_node,
                           lambda: [str(model.bus_job_id(j)) for j in model.jobs])
        model.listen.job_new.append(self._on_job_new)
        model.listen.job_removed.append(self._on_job_removed)
        model.listen.state.append(self._on_state)

    # -- objects -----------------------------------------------------------

    async def _manager_node(self, ctx: CallContext) -> Node:
        # The counters (NNames, SystemState...) cost a full ListServices and
        # TreeStatus: fetched only when properties are asked for, not for
        # every method call on the Manager.
        if ctx.msg.interface not in ("org.freedesktop.DBus.Properties", None):
            return Node(ManagerView(self, []), (MANAGER,))
        try:
            services = await self.model.services()
            await self.refresh_tree()
        except Exception as exc:
            log.info("manager properties without svmgr: %s", exc)
            services = None
        return Node(ManagerView(self, services), (MANAGER,))

    async def refresh_tree(self) -> dict:
        root = await self.model.tree()
        self.supervisors = walk_tree(root)
        return root

    async def unit(self, unit: str) -> UnitBase:
        kind, name = split_unit(unit)
        if kind == "service":
            try:
                svc = await self.model.service(name)
            except Exception as exc:
                raise translate(exc, unit) from exc
            if svc is not None:
                return ServiceUnit(self.model, svc)
        elif kind == "supervisor":
            try:
                await self.refresh_tree()
            except Exception as exc:
                raise translate(exc, unit) from exc
            entry = self.supervisors.get(name)
            if entry is not None:
                return SliceUnit(self.model, name, entry[0], entry[1])
        return MissingUnit(unit)

    async def _unit_node(self, rest: str, ctx: CallContext) -> Node | None:
        unit = unit_from_label(rest) if "/" not in rest else None
        if not unit:
            return None
        u = await self.unit(unit)
        return Node(u, interfaces_of(u))

    async def _job_node(self, rest: str, ctx: CallContext) -> Node | None:
        if not rest.isdigit():
            return None
        job = await self._job(int(rest))
        return Node(job, (JOB,)) if job else None

    async def _job(self, bus_id: int) -> dict | None:
        svmgr_id = self.model.svmgr_job_id(bus_id)
        if svmgr_id is None:
            return None
        try:
            jobs = (await self.model.request("ListJobs"))["jobs"]
        except Exception as exc:
            raise translate(exc) from exc
        for j in jobs:
            if j["id"] == svmgr_id:
                return {**j, "bus_id": bus_id, "bridge": self}
        return None

    # -- signals from svmgr events ------------------------------------------

    def _on_job_new(self, job: dict) -> None:
        bus_id = self.model.bus_job_id(job["id"])
        self.server.emit(MANAGER_PATH, MANAGER, "JobNew", bus_id, job_path(bus_id),
                         service_unit(job["unit"]))

    def _on_job_removed(self, job: dict) -> None:
        bus_id = self.model.bus_job_id(job["id"])
        self.server.emit(MANAGER_PATH, MANAGER, "JobRemoved", bus_id, job_path(bus_id),
                         service_unit(job["unit"]), job.get("result") or "done")

    def _on_state(self, name: str, svc: dict) -> None:
        if "source" not in svc:
            return  # not a full map: nothing exact to announce
        u = ServiceUnit(self.model, svc)
        self.server.properties_changed(u.path, UNIT, u, [
            "ActiveState", "SubState", "StateChangeTimestamp", "StateChangeTimestampMonotonic",
            "ActiveEnterTimestamp", "ActiveExitTimestamp", "InactiveEnterTimestamp",
            "InactiveExitTimestamp", "Job"])
        self.server.properties_changed(u.path, SERVICE, u, [
            "MainPID", "ControlPID", "ExecMainPID", "ExecMainCode", "ExecMainStatus", "Result",
            "StatusText", "NRestarts"])

    def unit_files_changed(self) -> None:
        self.server.emit(MANAGER_PATH, MANAGER, "UnitFilesChanged")

    def _local_job(self, unit: str, result: str = "done") -> str:
        bus_id = next(_LOCAL_JOB_IDS)
        path = job_path(bus_id)
        self.server.emit(MANAGER_PATH, MANAGER, "JobNew", bus_id, path, unit)
        self.server.emit(MANAGER_PATH, MANAGER, "JobRemoved", bus_id, path, unit, result)
        return path

    # -- Manager methods ---------------------------------------------------

    async def job(self, ctx: CallContext, request: str, verb: str, unit: str, mode: str) -> str:
        await ctx.require_root(f"{verb} {unit}")
        if mode in UNSUPPORTED_MODES:
            raise E.invalid_args(f"Job mode {mode} is not supported by dynamod.")
        if mode not in JOB_MODES:
            raise E.invalid_args(f"Job mode {mode} invalid.")
        if request == "StartService" and unit in SHUTDOWN_TARGETS:
            await self._shutdown(SHUTDOWN_TARGETS[unit])
            return self._local_job(unit)
        kind, name = split_unit(unit)
        if kind == "supervisor":
            raise DBusError(JOB_TYPE_NOT_APPLICABLE,
                            f"Job type {verb} is not applicable for unit {unit}: dynamod "
                            "supervisors start and stop with their services.")
        if kind != "service":
            raise no_such_unit(unit)
        try:
            body = await self.model.request(request, {"name": name, "mode": JOB_MODES[mode],
                                                      "no_block": True})
        except RemoteError as exc:
            if exc.code == "failed" and "is masked" in exc.message:
                raise DBusError(UNIT_MASKED, f"Unit {unit} is masked.") from exc
            raise translate(exc, unit) from exc
        except Exception as exc:
            raise translate(exc, unit) from exc
        job = body.get("job") or {}
        if "id" not in job:
            raise DBusError(E.FAILED, f"dynamod-svmgr made no job for {verb} {unit}")
        return job_path(self.model.bus_job_id(job["id"]))

    async def _shutdown(self, kind: str) -> None:
        self.stopping = True
        try:
            await self.model.request("Shutdown", {"kind": kind})
        except Exception as exc:
            self.stopping = False
            raise translate(exc) from exc

    async def get_unit(self, ctx: CallContext, unit: str) -> str:
        u = await self.unit(unit)
        if isinstance(u, MissingUnit):
            raise DBusError(NO_SUCH_UNIT, f"Unit {unit} not loaded.")
        return u.path

    async def load_unit(self, ctx: CallContext, unit: str) -> str:
        if not unit_type(unit):
            raise E.invalid_args(f"Unit name {unit} is not valid.")
        return unit_path(unit)

    async def get_unit_by_pid(self, ctx: CallContext, pid: int) -> str:
        if pid == 0:
            pid = await ctx.pid()
        try:
            name = (await self.model.request("GetServiceByPid", {"pid": pid}))["name"]
        except Exception as exc:
            raise translate(exc) from exc
        if not name:
            raise DBusError(NO_UNIT_FOR_PID, f"PID {pid} does not belong to any loaded unit.")
        return unit_path(service_unit(name))

    async def list_units(self, states: list[str] = (), patterns: list[str] = (),  # type: ignore[assignment]
                         names: list[str] | None = None) -> list[tuple]:
        try:
            services = await self.model.services()
            await self.refresh_tree()
        except Exception as exc:
            raise translate(exc) from exc
        jobs = {j["unit"]: j for j in self.model.jobs.values()}
        rows = []
        for s in services:
            unit = service_unit(s["name"])
            active, sub = M.service_states(s)
            load = "error" if s["name"] in self.model.load_errors else "loaded"
            j = jobs.get(s["name"])
            job = (0, "", "/")
            if j:
                bus_id = self.model.bus_job_id(j["id"])
                job = (bus_id, M.JOB_TYPES.get(j["type"], j["type"]), job_path(bus_id))
            rows.append(_row(unit, s.get("description") or s["name"], load, active, sub, job))
        for name, (node, _parent) in self.supervisors.items():
            active, sub = M.supervisor_states(node)
            unit = supervisor_unit(name)
            rows.append(_row(unit, f"dynamod supervisor {name}", "loaded", active, sub))
        if names is not None:
            wanted = set(names)
            return [r for r in rows if r[0] in wanted]
        if states:
            st = set(states)
            rows = [r for r in rows if st & {r[2], r[3], r[4]}]
        if patterns:
            rows = [r for r in rows if any(fnmatch.fnmatchcase(r[0], p) for p in patterns)]
        return rows

    async def list_jobs(self, ctx: CallContext) -> list[tuple]:
        try:
            jobs = (await self.model.request("ListJobs"))["jobs"]
        except Exception as exc:
            raise translate(exc) from exc
        out = []
        for j in jobs:
            bus_id = self.model.bus_job_id(j["id"])
            unit = service_unit(j["unit"])
            state = "running" if j.get("state") == "running" else "waiting"
            out.append((bus_id, unit, M.JOB_TYPES.get(j["type"], j["type"]), state,
                        job_path(bus_id), unit_path(unit)))
        return out

    async def get_job(self, ctx: CallContext, bus_id: int) -> str:
        if await self._job(bus_id) is None:
            raise DBusError(NO_SUCH_JOB, f"Job {bus_id} does not exist.")
        return job_path(bus_id)

    async def cancel_job(self, ctx: CallContext, bus_id: int) -> None:
        await ctx.require_root(f"canceling job {bus_id}")
        svmgr_id = self.model.svmgr_job_id(bus_id)
        if svmgr_id is None:
            raise DBusError(NO_SUCH_JOB, f"Job {bus_id} does not exist.")
        try:
            await self.model.request("CancelJob", {"id": svmgr_id})
        except RemoteError as exc:
            if exc.code in ("failed", "bad-request"):
                raise DBusError(NO_SUCH_JOB, f"Job {bus_id} does not exist.") from exc
            raise translate(exc) from exc
        except Exception as exc:
            raise translate(exc) from exc

    async def clear_jobs(self, ctx: CallContext) -> None:
        await ctx.require_root("canceling all jobs")
        for j in list(self.model.jobs.values()):
            try:
                await self.model.request("CancelJob", {"id": j["id"]})
            except RemoteError:
                pass  # ended meanwhile

    async def unit_processes(self, ctx: CallContext, unit: str) -> list[tuple[str, int, str]]:
        from .procs import unit_processes

        u = await self.unit(unit)
        if isinstance(u, MissingUnit):
            raise DBusError(NO_SUCH_UNIT, f"Unit {unit} not loaded.")
        return await unit_processes(u)

    async def reload(self, ctx: CallContext) -> None:
        await ctx.require_root("reloading the configuration")
        self.server.emit(MANAGER_PATH, MANAGER, "Reloading", True)
        try:
            result = await self.model.request("Reload")
        except RemoteError as exc:
            self.server.emit(MANAGER_PATH, MANAGER, "Reloading", False)
            lines = "\n".join(exc.details)
            raise DBusError(E.FAILED, f"{exc.message}\n{lines}".strip()) from exc
        except Exception as exc:
            self.server.emit(MANAGER_PATH, MANAGER, "Reloading", False)
            raise translate(exc) from exc
        for name in result.get("added", []):
            unit = service_unit(name)
            self.server.emit(MANAGER_PATH, MANAGER, "UnitNew", unit, unit_path(unit))
        for name in result.get("removed", []):
            unit = service_unit(name)
            self.model.deps.pop(name, None)
            self.server.emit(MANAGER_PATH, MANAGER, "UnitRemoved", unit, unit_path(unit))
        for name in [*result.get("added", []), *result.get("changed", [])]:
            await self.model.service(name)
        self.server.emit(MANAGER_PATH, MANAGER, "Reloading", False)
        self.server.emit(MANAGER_PATH, MANAGER, "UnitFilesChanged")

    async def power(self, ctx: CallContext, kind: str) -> None:
        await ctx.require_root(kind)
        await self._shutdown(kind)

    # -- unit files ----------------------------------------------------------

    async def unit_files(self, states: list[str], patterns: list[str]) -> list[tuple[str, str]]:
        try:
            services = await self.model.services()
        except Exception as exc:
            raise translate(exc) from exc
        maps = await asyncio.gather(*(self.model.service(s["name"]) for s in services))
        out = []
        for svc in maps:
            if svc is None:
                continue
            u = ServiceUnit(self.model, svc)
            # systemctl shows the basename as UNIT FILE: keep the TOML's
            # directory (what `systemctl status` names) under the unit's name.
            base = os.path.dirname(u.fragment_path) or os.path.join(self.model.config_dir, "services")
            path = os.path.join(base, u.id)
            if states and u.unit_file_state not in states:
                continue
            if patterns and not any(fnmatch.fnmatchcase(u.id, p) for p in patterns):
                continue
            out.append((path, u.unit_file_state))
        return out

    async def unit_file_state(self, ctx: CallContext, unit: str) -> str:
        u = await self.unit(os.path.basename(unit))
        if isinstance(u, MissingUnit):
            raise DBusError(E.FILE_NOT_FOUND, f"No such file or directory: {unit}")
        return u.unit_file_state


async def _with_install_info(changes: Any) -> tuple[bool, list]:
    return True, await changes


def _not_supported(what: str, how: str):
    def handler(*args: Any) -> None:
        raise DBusError(E.NOT_SUPPORTED, f"{what} is not supported by dynamod: {how}")
    return handler


def _m(name: str, in_sig: str, out_sig: str, fn: Any, ins: tuple = (), outs: tuple = ()) -> Method:
    return Method(name, in_sig, out_sig, fn, ins, outs)


def _job_method(name: str, request: str, verb: str) -> Method:
    return _m(name, "ss", "o", lambda b, ctx, unit, mode: b.bridge.job(ctx, request, verb, unit, mode),
              ("name", "mode"), ("job",))


def _reload_unit(view: ManagerView, ctx: CallContext, unit: str, mode: str) -> None:
    raise DBusError(JOB_TYPE_NOT_APPLICABLE,
                    f"Job type reload is not applicable for unit {unit}: dynamod services have no "
                    "reload action (use reload-or-restart).")


def _mp(name: str, sig: str, get: Any) -> Prop:
    return Prop(name, sig, get)


def _const(name: str, sig: str, value: Any) -> Prop:
    return Prop(name, sig, lambda v: value, emits="const")


MANAGER = Interface("org.freedesktop.systemd1.Manager", methods=[
    _m("GetUnit", "s", "o", lambda v, ctx, u: v.bridge.get_unit(ctx, u), ("name",), ("unit",)),
    _m("LoadUnit", "s", "o", lambda v, ctx, u: v.bridge.load_unit(ctx, u), ("name",), ("unit",)),
    _m("GetUnitByPID", "u", "o", lambda v, ctx, p: v.bridge.get_unit_by_pid(ctx, p), ("pid",), ("unit",)),
    _job_method("StartUnit", "StartService", "start"),
    _job_method("StopUnit", "StopService", "stop"),
    _job_method("RestartUnit", "RestartService", "restart"),
    _job_method("TryRestartUnit", "TryRestartService", "try-restart"),
    _job_method("ReloadOrRestartUnit", "ReloadOrRestartService", "reload-or-restart"),
    _job_method("ReloadOrTryRestartUnit", "TryRestartService", "reload-or-try-restart"),
    _m("ReloadUnit", "ss", "o", _reload_unit, ("name", "mode"), ("job",)),
    _m("KillUnit", "ssi", "", lambda v, ctx, u, whom, sig: unitfiles.kill(v.bridge, ctx, u, whom, sig),
       ("name", "whom", "signal")),
    _m("ResetFailedUnit", "s", "", lambda v, ctx, u: unitfiles.reset_failed(v.bridge, ctx, u), ("name",)),
    _m("ResetFailed", "", "", lambda v, ctx: unitfiles.reset_failed(v.bridge, ctx, None)),
    _m("GetUnitProcesses", "s", "a(sus)", lambda v, ctx, u: v.bridge.unit_processes(ctx, u),
       ("name",), ("processes",)),
    _m("GetJob", "u", "o", lambda v, ctx, i: v.bridge.get_job(ctx, i), ("id",), ("job",)),
    _m("CancelJob", "u", "", lambda v, ctx, i: v.bridge.cancel_job(ctx, i), ("id",)),
    _m("ClearJobs", "", "", lambda v, ctx: v.bridge.clear_jobs(ctx)),
    _m("ListUnits", "", "a(ssssssouso)", lambda v, ctx: v.bridge.list_units(), (), ("units",)),
    _m("ListUnitsFiltered", "as", "a(ssssssouso)", lambda v, ctx, st: v.bridge.list_units(st),
       ("states",), ("units",)),
    _m("ListUnitsByPatterns", "asas", "a(ssssssouso)",
       lambda v, ctx, st, pat: v.bridge.list_units(st, pat), ("states", "patterns"), ("units",)),
    _m("ListUnitsByNames", "as", "a(ssssssouso)",
       lambda v, ctx, names: v.bridge.list_units(names=names), ("names",), ("units",)),
    _m("ListJobs", "", "a(usssoo)", lambda v, ctx: v.bridge.list_jobs(ctx), (), ("jobs",)),
    # Signals go to every client whether it subscribed or not (systemctl
    # never subscribes but waits for JobRemoved), so these only say yes.
    _m("Subscribe", "", "", lambda v, ctx: None),
    _m("Unsubscribe", "", "", lambda v, ctx: None),
    _m("Reload", "", "", lambda v, ctx: v.bridge.reload(ctx)),
    _m("Reexecute", "", "", _not_supported("Reexecute", "dynamod-svmgr does not re-execute itself; use daemon-reload")),
    _m("PowerOff", "", "", lambda v, ctx: v.bridge.power(ctx, "poweroff")),
    _m("Reboot", "", "", lambda v, ctx: v.bridge.power(ctx, "reboot")),
    _m("Halt", "", "", lambda v, ctx: v.bridge.power(ctx, "halt")),
    _m("KExec", "", "", _not_supported("KExec", "no kexec support")),
    _m("ListUnitFiles", "", "a(ss)", lambda v, ctx: v.bridge.unit_files([], []), (), ("unit_files",)),
    _m("ListUnitFilesByPatterns", "asas", "a(ss)", lambda v, ctx, st, pat: v.bridge.unit_files(st, pat),
       ("states", "patterns"), ("unit_files",)),
    _m("GetUnitFileState", "s", "s", lambda v, ctx, f: v.bridge.unit_file_state(ctx, f), ("file",), ("state",)),
    _m("GetUnitFileLinks", "sb", "as", lambda v, ctx, name, runtime: [], ("name", "runtime"), ("links",)),
    _m("EnableUnitFiles", "asbb", "ba(sss)",
       lambda v, ctx, files, runtime, force: _with_install_info(
           unitfiles.change(v.bridge, ctx, "enable", files, runtime)),
       ("files", "runtime", "force"), ("carries_install_info", "changes")),
    _m("DisableUnitFiles", "asb", "a(sss)",
       lambda v, ctx, files, runtime: unitfiles.change(v.bridge, ctx, "disable", files, runtime),
       ("files", "runtime"), ("changes",)),
    _m("MaskUnitFiles", "asbb", "a(sss)",
       lambda v, ctx, files, runtime, force: unitfiles.change(v.bridge, ctx, "mask", files, runtime),
       ("files", "runtime", "force"), ("changes",)),
    _m("UnmaskUnitFiles", "asb", "a(sss)",
       lambda v, ctx, files, runtime: unitfiles.change(v.bridge, ctx, "unmask", files, runtime),
       ("files", "runtime"), ("changes",)),
    _m("GetDefaultTarget", "", "s", _not_supported("GetDefaultTarget", "dynamod has no targets"), (), ("name",)),
], signals=[
    Signal("UnitNew", "so", ("id", "unit")),
    Signal("UnitRemoved", "so", ("id", "unit")),
    Signal("JobNew", "uos", ("id", "job", "unit")),
    Signal("JobRemoved", "uoss", ("id", "job", "unit", "result")),
    Signal("StartupFinished", "tttttt", ("firmware", "loader", "kernel", "initrd", "userspace", "total")),
    Signal("UnitFilesChanged", ""),
    Signal("Reloading", "b", ("active",)),
], props=[
    _const("Version", "s", f"{SYSTEMD_VERSION} (dynamod-sd1bridge {__version__})"),
    _const("Features", "s", ""),
    _const("Virtualization", "s", ""),
    _const("Architecture", "s", _ARCH.get(platform.machine(), platform.machine())),
    _const("Tainted", "s", ""),
    _const("FirmwareTimestamp", "t", 0),
    _const("FirmwareTimestampMonotonic", "t", 0),
    _const("LoaderTimestamp", "t", 0),
    _const("LoaderTimestampMonotonic", "t", 0),
    _const("KernelTimestamp", "t", M.usec(_boot_time())),
    _const("KernelTimestampMonotonic", "t", 0),
    Prop("UserspaceTimestamp", "t", lambda v: M.usec(v.userspace), emits="const"),
    Prop("UserspaceTimestampMonotonic", "t", lambda v: _mono_of(v.userspace), emits="const"),
    _const("FinishTimestamp", "t", 0),
    _const("FinishTimestampMonotonic", "t", 0),
    _mp("NNames", "u", lambda v: v.n_names),
    _mp("NFailedUnits", "u", lambda v: v.n_failed),
    _mp("NJobs", "u", lambda v: v.n_jobs),
    _mp("NInstalledJobs", "u", lambda v: v.bridge.model.max_job),
    _mp("NFailedJobs", "u", lambda v: v.n_failed_jobs),
    _mp("Progress", "d", lambda v: 1.0 if v.state != "starting" else 0.5),
    _const("Environment", "as", []),
    Prop("UnitPath", "as", lambda v: [os.path.join(v.bridge.model.config_dir, "services")], emits="const"),
    _const("ConfirmSpawn", "b", False),
    _const("ShowStatus", "b", False),
    _const("DefaultStandardOutput", "s", "journal"),
    _const("DefaultStandardError", "s", "inherit"),
    _mp("SystemState", "s", lambda v: v.state),
    _const("ControlGroup", "s", ""),
    _const("ExitCode", "y", 0),
])


JOB = Interface("org.freedesktop.systemd1.Job", methods=[
    Method("Cancel", "", "", lambda j, ctx: j["bridge"].cancel_job(ctx, j["bus_id"])),
    Method("GetAfter", "", "a(usssoo)", lambda j, ctx: [], (), ("jobs",)),
    Method("GetBefore", "", "a(usssoo)", lambda j, ctx: [], (), ("jobs",)),
], props=[
    Prop("Id", "u", lambda j: j["bus_id"], emits="const"),
    Prop("Unit", "(so)", lambda j: (service_unit(j["unit"]), unit_path(service_unit(j["unit"]))), emits="const"),
    Prop("JobType", "s", lambda j: M.JOB_TYPES.get(j["type"], j["type"]), emits="const"),
    Prop("State", "s", lambda j: "running" if j.get("state") == "running" else "waiting"),
    Prop("ActivationDetails", "a(ss)", lambda j: [], emits="const"),
])

__all__ = ["JOB", "MANAGER", "Bridge", "relative_cgroup", "service_parents"]
