"""The processes of a unit, for GetUnitProcesses (the ``CGroup:`` tree of
``systemctl status``): everything in the service's cgroup when the
isolation plugin placed it in one, otherwise its main process and that
process's descendants, each with the cgroup /proc says it is in."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .model import service_parents, walk_tree
from .units import ServiceUnit, SliceUnit, UnitBase, relative_cgroup

Proc = tuple[str, int, str]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    if raw:
        return " ".join(a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0"))
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f"[{f.read().strip()}]"
    except OSError:
        return ""


def _cgroup_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return ""


def _in_cgroup(directory: str) -> list[Proc]:
    out: list[Proc] = []
    for root, _dirs, files in os.walk(directory):
        if "cgroup.procs" not in files:
            continue
        try:
            with open(os.path.join(root, "cgroup.procs")) as f:
                pids = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
        rel = relative_cgroup(root)
        out += [(rel, pid, _cmdline(pid)) for pid in pids]
    return out


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces and parentheses: the ppid follows the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1:
            kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def _tree_of(pid: int, kids: dict[int, list[int]]) -> list[Proc]:
    out: list[Proc] = []
    stack = [pid]
    seen: set[int] = set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        cmd = _cmdline(p)
        if not cmd and not os.path.exists(f"/proc/{p}"):
            continue
        out.append((_cgroup_of(p), p, cmd))
        stack += kids.get(p, [])
    return out


def service_processes(unit: ServiceUnit, kids: dict[int, list[int]] | None = None) -> list[Proc]:
    if unit.cgroup_dir and os.path.isdir(unit.cgroup_dir):
        return _in_cgroup(unit.cgroup_dir)
    if not unit.main_pid:
        return []
    return _tree_of(unit.main_pid, kids if kids is not None else _children_map())


async def unit_processes(unit: UnitBase) -> list[Proc]:
    if isinstance(unit, ServiceUnit):
        return service_processes(unit)
    if isinstance(unit, SliceUnit):
        model: Any = unit.model  # type: ignore[attr-defined]
        root = await model.tree()
        sups = walk_tree(root)
        inside = {unit.name}
        changed = True
        while changed:
            changed = False
            for name, (_node, parent) in sups.items():
                if parent in inside and name not in inside:
                    inside.add(name)
                    changed = True
        members = [s for s, sup in service_parents(root).items() if sup in inside]
        maps = await asyncio.gather(*(model.service(m) for m in members))
        kids = _children_map()
        out: list[Proc] = []
        for svc in maps:
            if svc is not None:
                out += service_processes(ServiceUnit(model, svc), kids)
        return out
    return []
