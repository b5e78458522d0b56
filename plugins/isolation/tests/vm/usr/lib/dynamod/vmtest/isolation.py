"""dynamod-isolation's checks inside the QEMU test VM, where cgroup v2 has
real memory, pids, cpu (and io) controllers. Loaded by the image's vmtest
runner (dynamod_bootmedia.guest): every ``check_*`` returns what it saw or
raises."""

from __future__ import annotations

import os
import time
from typing import Any

from dynamod.ipc.client import Client

SOCK = "/run/dynamod/control.sock"
TREE = "/sys/fs/cgroup/dynamod"


def status(name: str) -> dict[str, Any]:
    with Client(SOCK, timeout=30) as c:
        return c.request("ServiceStatus", {"name": name}).body["service"]


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def keyed(path: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in read(path).splitlines())}


def check_controllers(ctx: dict[str, Any]) -> dict[str, Any]:
    root = read("/sys/fs/cgroup/cgroup.subtree_control").split()
    tree = read(f"{TREE}/cgroup.subtree_control").split()
    assert {"memory", "pids", "cpu"} <= set(tree), tree
    # Controllers in the parents only: a service's own cgroup (a leaf with
    # processes) distributes nothing.
    leaf = read(f"{TREE}/iso-limited.service/cgroup.subtree_control")
    assert leaf == "", leaf
    return {"root": root, "tree": tree}


def check_limits(ctx: dict[str, Any]) -> dict[str, Any]:
    path = f"{TREE}/iso-limited.service"
    files = {f: read(f"{path}/{f}") for f in ("memory.max", "memory.high", "cpu.weight", "cpu.max", "pids.max")}
    assert files == {
        "memory.max": str(64 << 20),
        "memory.high": str(48 << 20),
        "cpu.weight": "50",
        "cpu.max": "50000 100000",
        "pids.max": "16",
    }, files
    io = read(f"{path}/io.weight") if os.path.exists(f"{path}/io.weight") else None
    info = status("iso-limited")
    extra = info["extra"]
    assert extra["cgroup"] == path, extra
    assert extra["memory-current"] > 0 and extra["pids-current"] == 1, extra
    assert "cpu-usage-usec" in extra and extra.get("oom-kills") == 0, extra
    assert info["pid"] in [int(p) for p in read(f"{path}/cgroup.procs").split()]
    return {"files": files, "io.weight": io, "extra": extra,
            "not-applied": extra.get("limits-not-applied", [])}


def check_pids_max(ctx: dict[str, Any]) -> dict[str, Any]:
    wait(lambda: os.path.exists("/run/iso-forker.done"), 30, "iso-forker to finish forking")
    path = f"{TREE}/iso-forker.service"
    current = int(read(f"{path}/pids.current"))
    events = keyed(f"{path}/pids.events")
    assert current <= 8, current
    assert events.get("max", 0) >= 1, events  # forks were refused
    return {"pids.current": current, "pids.events": events,
            "status": status("iso-forker")["extra"]}


def check_oom(ctx: dict[str, Any]) -> dict[str, Any]:
    info = wait(lambda: (s := status("iso-hog"))["state"] == "failed" and s, 90, "iso-hog to fail")
    assert "oom-killed" in info["reason"], info["reason"]
    assert info["restarts"] == 1, info  # the restart policy applied, then gave up
    assert info["extra"]["oom-kills"] >= 2, info["extra"]
    return {"reason": info["reason"], "restarts": info["restarts"], "extra": info["extra"]}


def pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def check_placement(ctx: dict[str, Any]) -> dict[str, Any]:
    """dynamod-init mounted cgroup2 with favordynmods (cheap migrations);
    svmgr went home after moving into each service's cgroup for its fork;
    each service was born in its own cgroup, limits and all."""
    opts = next(line.split()[3] for line in read("/proc/self/mounts").splitlines()
                if line.split()[1] == "/sys/fs/cgroup")
    svmgr = [pid for pid in pids() if any(b"dynamod-svmgr" in arg or b"dynamod.svmgr" in arg
                                          for arg in cmdline(pid)[:3])]
    assert svmgr, "no dynamod-svmgr process"
    homes = {pid: read(f"/proc/{pid}/cgroup") for pid in svmgr}
    services = {}
    for name in ("iso-limited", "iso-forker"):
        pid = status(name)["pid"]
        services[name] = read(f"/proc/{pid}/cgroup")
    return {"mount-options": opts.split(","), "svmgr": homes, "services": services}
