"""Unit objects: dynamod services, supervisors and units dynamod does not
have, with systemd's exact D-Bus property types (org.freedesktop.systemd1(5)).

A unit object is built per call from a fresh service map; getters only read
it. Properties a dynamod unit has no value for keep systemd's "unknown"
encoding (``UINT64_MAX`` for counters, 0 for timestamps) rather than being
left out, because systemctl treats those specially (an omitted line).
"""

from __future__ import annotations

import os
import time
from typing import Any

from dynamod_mimic_common import Interface, Method, Prop

from . import mapping as M
from .model import Model, Times
from .names import ROOT_SUPERVISOR, job_path, service_unit, supervisor_unit, unit_path, unit_type

_CGROUP_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def relative_cgroup(path: str | None) -> str:
    """systemd's ControlGroup form ("/x/y.service") of a cgroup directory."""
    if not path:
        return ""
    for root in _CGROUP_ROOTS:
        if path == root:
            return "/"
        if path.startswith(root + "/"):
            return path[len(root):]
    return path


def _mono(t: float) -> int:
    # CLOCK_MONOTONIC µs for a Unix time, as systemd's *Monotonic twins.
    if not t:
        return 0
    return max(0, int((t - time.time() + time.monotonic()) * 1_000_000))


class UnitBase:
    """Defaults shared by every unit kind."""

    kind = ""
    description = ""
    load_state = "not-found"
    active_state = "inactive"
    sub_state = "dead"
    fragment_path = ""
    unit_file_state = ""
    requires: list[str] = []
    wants: list[str] = []
    after: list[str] = []
    before: list[str] = []
    required_by: list[str] = []
    wanted_by: list[str] = []
    can_start = False
    can_stop = False
    perpetual = False
    job: tuple[int, str] = (0, "/")
    load_error: tuple[str, str] = ("", "")
    times = Times()
    state_change = 0.0
    control_group = ""
    dropins: list[str] = []

    def __init__(self, unit: str) -> None:
        self.id = unit
        self.path = unit_path(unit)

    def ts(self, which: str) -> int:
        value = getattr(self.times, which)
        return M.usec(value)

    def mono(self, which: str) -> int:
        return _mono(getattr(self.times, which))


class MissingUnit(UnitBase):
    """A unit name dynamod has nothing for: an object with
    LoadState=not-found (systemctl then says "could not be found")."""

    def __init__(self, unit: str) -> None:
        super().__init__(unit)
        self.description = unit
        self.load_error = ("org.freedesktop.systemd1.NoSuchUnit", f"Unit {unit} not found.")


class ServiceUnit(UnitBase):
    kind = "service"

    def __init__(self, model: Model, svc: dict) -> None:
        name = svc["name"]
        super().__init__(service_unit(name))
        self.name = name
        self.svc = svc
        self.times = model.times.get(name) or Times()
        self.description = svc.get("description") or name
        self.load_state = M.load_state(svc)
        self.active_state, self.sub_state = M.service_states(svc)
        src = svc.get("source") or ""
        if src and not src.startswith("<"):
            self.fragment_path = src if os.path.isabs(src) else os.path.join(model.config_dir, src)
        self.unit_file_state = svc.get("enablement") or ("enabled" if svc.get("enabled", True) else "disabled")
        if svc.get("masked"):
            self.load_state = "masked"
        self.dropins = [svc["dropin"]] if svc.get("dropin") else []
        if svc.get("load_error"):
            self.unit_file_state = "bad"
            self.load_error = ("org.freedesktop.systemd1.BadUnitSetting", str(svc["load_error"]))
        self.requires = [service_unit(n) for n in svc.get("requires") or ()]
        self.wants = [service_unit(n) for n in svc.get("wants") or ()]
        self.after = [service_unit(n) for n in svc.get("after") or ()]
        self.before = [service_unit(n) for n in svc.get("before") or ()]
        self.model = model
        self.can_start = self.load_state == "loaded"
        self.can_stop = self.load_state in ("loaded", "masked")
        job = svc.get("job")
        if job:
            self.job = (model.bus_job_id(job["id"]), job_path(model.bus_job_id(job["id"])))
        self.state_change = svc.get("since") or 0.0
        # Timestamps not seen since the bridge started come from `since`.
        t = self.times
        if self.active_state == "active" and not t.active_enter:
            t.active_enter = self.state_change
        if self.active_state in ("inactive", "failed") and not t.inactive_enter:
            t.inactive_enter = self.state_change
        extra = svc.get("extra") or {}
        self.control_group = relative_cgroup(extra.get("cgroup"))
        self.cgroup_dir = extra.get("cgroup") or ""
        self.slice = supervisor_unit(svc.get("supervisor") or ROOT_SUPERVISOR)
        self.main_pid = svc.get("main_pid") or svc.get("pid") or 0
        self.exec_main_pid = self.main_pid or self.times.last_main_pid
        self.code, self.status = M.exit_code_status(svc.get("exit"))
        self.memory = _count(extra.get("memory-current"))
        self.tasks = _count(extra.get("pids-current"))
        cpu = extra.get("cpu-usage-usec")
        self.cpu_nsec = int(cpu) * 1000 if isinstance(cpu, int) and cpu >= 0 else M.UINT64_MAX
        self.result = M.service_result(svc)
        pids = svc.get("control_pids") or ()
        self.control_pid = pids[0] if pids else 0


    # Reverse dependencies scan every service: computed only when read (a
    # state-change announcement builds a unit per event and needs neither).
    @property
    def required_by(self) -> list[str]:  # type: ignore[override]
        return [service_unit(n) for n in self.model.required_by(self.name, "requires")]

    @property
    def wanted_by(self) -> list[str]:  # type: ignore[override]
        return [service_unit(n) for n in self.model.required_by(self.name, "wants")]


class SliceUnit(UnitBase):
    """A dynamod supervisor as a slice."""

    kind = "slice"
    perpetual = False

    def __init__(self, model: Model, name: str, node: dict, parent: str | None) -> None:
        super().__init__(supervisor_unit(name))
        self.model = model
        self.name = name
        self.node = node
        strategy = node.get("strategy", "")
        self.description = f"dynamod supervisor {name}" + (f" ({strategy})" if strategy else "")
        self.load_state = "loaded"
        self.active_state, self.sub_state = M.supervisor_states(node)
        self.unit_file_state = "static"
        self.slice = supervisor_unit(parent) if parent else ""
        self.perpetual = name == ROOT_SUPERVISOR
        self.state_change = 0.0
        self.reason = node.get("reason", "")


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else M.UINT64_MAX


def _ts_props(name: str, field: str) -> list[Prop]:
    return [Prop(f"{name}Timestamp", "t", lambda u, f=field: u.ts(f)),
            Prop(f"{name}TimestampMonotonic", "t", lambda u, f=field: u.mono(f))]


UNIT = Interface("org.freedesktop.systemd1.Unit", props=[
    Prop("Id", "s", lambda u: u.id, emits="const"),
    Prop("Names", "as", lambda u: [u.id]),
    Prop("Following", "s", lambda u: ""),
    Prop("Requires", "as", lambda u: u.requires, emits="false"),
    Prop("Requisite", "as", lambda u: [], emits="false"),
    Prop("Wants", "as", lambda u: u.wants, emits="false"),
    Prop("BindsTo", "as", lambda u: [], emits="false"),
    Prop("PartOf", "as", lambda u: [], emits="false"),
    Prop("RequiredBy", "as", lambda u: u.required_by, emits="false"),
    Prop("WantedBy", "as", lambda u: u.wanted_by, emits="false"),
    Prop("Conflicts", "as", lambda u: [], emits="false"),
    Prop("Before", "as", lambda u: u.before, emits="false"),
    Prop("After", "as", lambda u: u.after, emits="false"),
    Prop("Triggers", "as", lambda u: [], emits="false"),
    Prop("TriggeredBy", "as", lambda u: [], emits="false"),
    Prop("Documentation", "as", lambda u: [], emits="false"),
    Prop("Description", "s", lambda u: u.description),
    Prop("LoadState", "s", lambda u: u.load_state),
    Prop("ActiveState", "s", lambda u: u.active_state),
    Prop("FreezerState", "s", lambda u: "running"),
    Prop("SubState", "s", lambda u: u.sub_state),
    Prop("FragmentPath", "s", lambda u: u.fragment_path),
    Prop("SourcePath", "s", lambda u: ""),
    Prop("DropInPaths", "as", lambda u: u.dropins),
    Prop("UnitFileState", "s", lambda u: u.unit_file_state),
    Prop("UnitFilePreset", "s", lambda u: ""),
    Prop("StateChangeTimestamp", "t", lambda u: M.usec(u.state_change)),
    Prop("StateChangeTimestampMonotonic", "t", lambda u: _mono(u.state_change)),
    *_ts_props("InactiveExit", "inactive_exit"),
    *_ts_props("ActiveEnter", "active_enter"),
    *_ts_props("ActiveExit", "active_exit"),
    *_ts_props("InactiveEnter", "inactive_enter"),
    Prop("CanStart", "b", lambda u: u.can_start),
    Prop("CanStop", "b", lambda u: u.can_stop),
    Prop("CanReload", "b", lambda u: False),
    Prop("CanIsolate", "b", lambda u: False),
    Prop("CanFreeze", "b", lambda u: False),
    Prop("Job", "(uo)", lambda u: u.job),
    Prop("StopWhenUnneeded", "b", lambda u: False),
    Prop("RefuseManualStart", "b", lambda u: False),
    Prop("RefuseManualStop", "b", lambda u: u.perpetual),
    Prop("NeedDaemonReload", "b", lambda u: False),
    Prop("ConditionResult", "b", lambda u: True),
    Prop("AssertResult", "b", lambda u: True),
    Prop("ConditionTimestamp", "t", lambda u: 0),
    Prop("AssertTimestamp", "t", lambda u: 0),
    Prop("Conditions", "a(sbbsi)", lambda u: []),
    Prop("Asserts", "a(sbbsi)", lambda u: []),
    Prop("LoadError", "(ss)", lambda u: u.load_error),
    Prop("Transient", "b", lambda u: False),
    Prop("Perpetual", "b", lambda u: u.perpetual),
    Prop("InvocationID", "ay", lambda u: b""),
    Prop("Markers", "as", lambda u: []),
])

_CGROUP_PROPS = [
    Prop("Slice", "s", lambda u: getattr(u, "slice", ""), emits="false"),
    Prop("ControlGroup", "s", lambda u: u.control_group, emits="false"),
    Prop("MemoryCurrent", "t", lambda u: getattr(u, "memory", M.UINT64_MAX), emits="false"),
    Prop("TasksCurrent", "t", lambda u: getattr(u, "tasks", M.UINT64_MAX), emits="false"),
    Prop("CPUUsageNSec", "t", lambda u: getattr(u, "cpu_nsec", M.UINT64_MAX), emits="false"),
]


async def _processes(u: Any, ctx: Any) -> Any:
    from .procs import unit_processes

    return await unit_processes(u)


def cgroup_interface(kind: str) -> Interface:
    """The type interface of a cgroup-bearing unit kind."""
    name = "org.freedesktop.systemd1." + kind.capitalize()
    return Interface(name, props=_CGROUP_PROPS,
                     methods=[Method("GetProcesses", "", "a(sus)", _processes, (), ("processes",))])


SERVICE = cgroup_interface("service").extend(props=[
    Prop("Type", "s", lambda u: u.svc.get("type", "simple"), emits="const"),
    Prop("Restart", "s", lambda u: M.RESTART_POLICIES.get(u.svc.get("restart_policy", ""), "no")),
    Prop("NotifyAccess", "s", lambda u: "main" if u.svc.get("readiness") == "notify" else "none"),
    Prop("RemainAfterExit", "b", lambda u: u.svc.get("type") == "oneshot"),
    Prop("MainPID", "u", lambda u: u.main_pid),
    Prop("ControlPID", "u", lambda u: u.control_pid),
    Prop("StatusText", "s", lambda u: u.svc.get("status_text") or ""),
    Prop("StatusErrno", "i", lambda u: 0),
    Prop("Result", "s", lambda u: u.result),
    Prop("NRestarts", "u", lambda u: int(u.svc.get("restarts") or 0)),
    Prop("ExecMainStartTimestamp", "t", lambda u: u.ts("exec_start")),
    Prop("ExecMainStartTimestampMonotonic", "t", lambda u: u.mono("exec_start")),
    Prop("ExecMainExitTimestamp", "t", lambda u: u.ts("exec_exit")),
    Prop("ExecMainExitTimestampMonotonic", "t", lambda u: u.mono("exec_exit")),
    Prop("ExecMainPID", "u", lambda u: u.exec_main_pid),
    Prop("ExecMainCode", "i", lambda u: u.code),
    Prop("ExecMainStatus", "i", lambda u: u.status),
])

SLICE = cgroup_interface("slice")

#: the type interface of a unit kind dynamod has no counterpart of
OTHER_TYPES = {kind: cgroup_interface(kind) for kind in ("scope", "socket", "mount", "swap")}
OTHER_TYPES.update({kind: Interface("org.freedesktop.systemd1." + kind.capitalize())
                    for kind in ("target", "device", "automount", "timer", "path")})


def interfaces_of(unit: UnitBase) -> tuple[Interface, ...]:
    if isinstance(unit, ServiceUnit):
        return (UNIT, SERVICE)
    if isinstance(unit, SliceUnit):
        return (UNIT, SLICE)
    kind = unit_type(unit.id)
    if kind == "service":
        return (UNIT, OTHER_SERVICE)
    if kind == "slice":
        return (UNIT, SLICE)
    extra = OTHER_TYPES.get(kind)
    return (UNIT, extra) if extra else (UNIT,)


# A not-found .service answers the Service interface with defaults only (the
# getters of SERVICE read a service map it does not have).
OTHER_SERVICE = cgroup_interface("service").extend(props=[
    Prop("MainPID", "u", lambda u: 0),
    Prop("Result", "s", lambda u: "success"),
    Prop("StatusText", "s", lambda u: ""),
])
