"""cgroup v2 with real services on this machine's cgroup2 mount (a hybrid
mount without controllers here: placement, kill, lookup and removal work;
limits are reported as not applicable). Each test has its own tree
(``cgroot``) and svmgr."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from dynamod_isolation.cgroups import cgroup2_mounts

from dynamod.testing import ConfigTree, InitContainer, Svmgr, pid_alive, wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not cgroup2_mounts(), reason="needs root and a cgroup2 mount"
)


def procs(path: str) -> set[int]:
    try:
        return {int(p) for p in Path(path, "cgroup.procs").read_text().split()}
    except FileNotFoundError:
        return set()


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (by parent PID)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                data = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            parent[int(entry)] = int(data[data.rindex(b")") + 2 :].split()[1])
    out, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in out:
                out.add(child)
                frontier.append(child)
    return {p for p in out if pid_alive(p)}


def read_int(path: Path, mgr: Svmgr) -> int:
    return mgr.wait_for(lambda: path.exists() and path.read_text().strip().isdigit()
                        and int(path.read_text()), what=f"a PID in {path}")


def controllers_missing(cgroot: str) -> bool:
    mount = os.path.dirname(cgroot)
    return "memory" not in Path(mount, "cgroup.controllers").read_text().split()


def test_each_service_in_its_own_cgroup(tree: ConfigTree, svmgr: Callable[..., Svmgr], cgroot: str,
                                        shared_dir: Path) -> None:
    tree.simple("a", f"cat /proc/self/cgroup > {shared_dir}/a; exec sleep 1000")
    tree.simple("b", "exec sleep 1000")
    mgr = svmgr()
    for name in ("a", "b"):
        info = mgr.wait_state(name, "running")
        path = f"{cgroot}/{name}.service"
        assert info["extra"]["cgroup"] == path
        # (running as soon as spawned: the join may still be under way)
        mgr.wait_for(lambda p=path, i=info: i["pid"] in procs(p), what=f"{name} in its cgroup")
        assert isinstance(info["extra"]["cpu-usage-usec"], int)
        if controllers_missing(cgroot):
            assert "memory-current" not in info["extra"] and "pids-current" not in info["extra"]
        else:
            assert info["extra"]["memory-current"] > 0 and info["extra"]["pids-current"] >= 1
    rel = "/" + os.path.relpath(cgroot, os.path.dirname(cgroot))
    seen = mgr.wait_for(lambda: Path(shared_dir, "a").exists() and Path(shared_dir, "a").read_text())
    assert f"0::{rel}/a.service" in seen.splitlines()
    mgr.request("StopService", {"name": "a"})
    mgr.wait_state("a", "stopped")
    mgr.wait_for(lambda: not os.path.exists(f"{cgroot}/a.service"), what="a's cgroup removed")
    assert os.path.isdir(f"{cgroot}/b.service")
    assert "cgroup" not in mgr.status("a")["extra"]


def test_placement_is_race_free(tree: ConfigTree, svmgr: Callable[..., Svmgr], cgroot: str,
                                shared_dir: Path) -> None:
    """The service forks at once, before the manager could do anything:
    every process it ever made is in its cgroup (the join happens before
    the service execs, so there is no window to escape through)."""
    script = (
        "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 & done; "
        "(sleep 1000 &); setsid sleep 1000 & "
        f"echo done > {shared_dir}/forked; wait"
    )
    tree.simple("forker", script)
    mgr = svmgr()
    info = mgr.wait_state("forker", "running")
    mgr.wait_for(lambda: Path(shared_dir, "forked").exists(), what="the forks")
    family = descendants(info["pid"])
    assert len(family) >= 12
    in_cgroup = procs(f"{cgroot}/forker.service")
    assert family <= in_cgroup
    # The manager is a subreaper: the double-forked sleep is its child now,
    # not the service's; the cgroup still knows it belongs to forker.
    assert len(in_cgroup) >= 13


def test_get_service_by_pid_for_any_process(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                            shared_dir: Path) -> None:
    tree.simple("parent", f"sh -c 'sleep 1000 & echo $! > {shared_dir}/grandchild; wait' & "
                f"(setsid sleep 1000 & echo $! > {shared_dir}/orphan); wait")
    mgr = svmgr()
    mgr.wait_state("parent", "running")
    grandchild = read_int(shared_dir / "grandchild", mgr)
    orphan = read_int(shared_dir / "orphan", mgr)
    for pid in (grandchild, orphan):
        assert mgr.request("GetServiceByPid", {"pid": pid})["name"] == "parent"
    assert mgr.request("GetServiceByPid", {"pid": os.getpid()})["name"] is None
    assert mgr.request("GetServiceByPid", {"pid": mgr.pid})["name"] is None


def test_stop_kills_double_forked_leftovers(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                             cgroot: str, shared_dir: Path) -> None:
    """A daemon left behind in its own session survives the stop signal to
    the process group; the whole cgroup goes down with the service."""
    tree.simple("leaky", f"(setsid sleep 1000 & echo $! > {shared_dir}/leftover); exec sleep 1000")
    mgr = svmgr()
    mgr.wait_state("leaky", "running")
    leftover = read_int(shared_dir / "leftover", mgr)
    assert pid_alive(leftover)
    mgr.request("StopService", {"name": "leaky"})
    mgr.wait_state("leaky", "stopped")
    mgr.wait_for(lambda: not pid_alive(leftover), what=f"leftover {leftover} killed")
    mgr.wait_for(lambda: not os.path.exists(f"{cgroot}/leaky.service"), what="cgroup removed")


def test_stop_timeout_kills_the_whole_cgroup(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                             shared_dir: Path) -> None:
    tree.simple(
        "stubborn",
        f"trap '' TERM; (trap '' TERM; setsid sh -c \"trap '' TERM; sleep 1000\" & "
        f"echo $! > {shared_dir}/leftover); echo up > {shared_dir}/up; "
        "while :; do sleep 0.1; done",
        extra='[shutdown]\nstop-timeout = "500ms"\n',
    )
    mgr = svmgr()
    info = mgr.wait_state("stubborn", "running")
    leftover = read_int(shared_dir / "leftover", mgr)
    mgr.wait_for(lambda: (shared_dir / "up").exists())
    mgr.request("StopService", {"name": "stubborn"})
    final = mgr.wait_state("stubborn", "stopped")
    assert "killed after stop timeout" in final["reason"]
    mgr.wait_for(lambda: not pid_alive(leftover) and not pid_alive(info["pid"]), what="all killed")


def test_failed_service_leftovers_die_and_restart_gets_a_clean_cgroup(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], cgroot: str, shared_dir: Path
) -> None:
    tree.simple(
        "crashy",
        f"(setsid sleep 1000 & echo $! >> {shared_dir}/leftovers); sleep 0.2; exit 3",
        extra='[restart]\ndelay = "100ms"\nmax-restarts = 2\nmax-restart-window = "1m"\n',
    )
    mgr = svmgr()
    mgr.wait_state("crashy", "failed", timeout=30)
    leftovers = [int(x) for x in (shared_dir / "leftovers").read_text().split()]
    assert len(leftovers) == 3  # first start and two restarts
    mgr.wait_for(lambda: not any(pid_alive(p) for p in leftovers), what="leftovers killed")
    mgr.wait_for(lambda: not os.path.exists(f"{cgroot}/crashy.service"), what="cgroup removed")


def test_limits_that_cannot_be_applied_are_said_once(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], cgroot: str
) -> None:
    if not controllers_missing(cgroot):
        pytest.skip("this machine has a memory controller (covered by the VM checks)")
    tree.simple("limited", "sleep 0.3; exit 1",
                extra='[cgroup]\nmemory-max = "512M"\npids-max = 64\n'
                      '[restart]\ndelay = "100ms"\nmax-restarts = 10\n')
    tree.simple("also", "exec sleep 1000", extra="[cgroup]\ncpu-weight = 200\n")
    mgr = svmgr()
    mgr.wait_state("also", "running")
    info = mgr.wait_state("limited", "running")
    assert info["extra"]["limits-not-applied"] == ["memory-max", "pids-max"]
    mgr.wait_for(lambda: mgr.status("limited")["restarts"] >= 2, what="two restarts")
    log = mgr.log()
    # Once for the machine (which limits, why), once per service.
    assert log.count("these limits cannot be applied here: memory-max, memory-high, cpu-weight") == 1
    assert "does not offer it" in log
    assert log.count("limited: cannot apply memory-max, pids-max") == 1
    assert log.count("also: cannot apply cpu-weight") == 1
    # The service's own log says it on every start.
    assert sum("limits not applied: memory-max" in line for line in mgr.logs("limited")) >= 2


def test_without_a_cgroup2_tree_services_still_run(tree: ConfigTree, tmp_path: Path) -> None:
    tree.simple("plain", "exec sleep 1000", extra='[cgroup]\nmemory-max = "64M"\n')
    env = {**os.environ, "DYNAMOD_CGROUP_ROOT": str(tmp_path)}  # not a cgroup2 directory
    with Svmgr(tree.root, tmp_path / "run", env=env) as mgr:
        info = mgr.wait_state("plain", "running")
        assert "cgroup" not in info["extra"]
        assert info["extra"]["limits-not-applied"] == ["memory-max"]
        assert "services run without cgroups" in mgr.log()
        pid = info["pid"]
        mgr.request("StopService", {"name": "plain"})
        mgr.wait_state("plain", "stopped")
        assert not pid_alive(pid)


def test_per_instance_tree_by_default(tree: ConfigTree, tmp_path: Path) -> None:
    """Without DYNAMOD_CGROUP_ROOT a manager that is not the system's gets
    a tree of its own (two test managers never share cgroups) and removes
    it when it exits."""
    tree.simple("one", "exec sleep 1000")
    env = {k: v for k, v in os.environ.items() if k != "DYNAMOD_CGROUP_ROOT"}
    with Svmgr(tree.root, tmp_path / "run", env=env) as mgr:
        path = mgr.wait_state("one", "running")["extra"]["cgroup"]
        parent = os.path.dirname(path)
        assert re.fullmatch(r"dynamod-[0-9a-f]{12}", os.path.basename(parent))
        assert os.path.basename(path) == "one.service"
    assert not os.path.exists(parent)


def test_kill_hook_sends_sigkill_through_cgroup_kill(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                                     shared_dir: Path) -> None:
    """A readiness timeout kills with SIGKILL: everything in the cgroup."""
    tree.simple(
        "slow",
        f"(setsid sleep 1000 & echo $! > {shared_dir}/leftover); exec sleep 1000",
        extra='[readiness]\ntype = "exec"\ncheck-exec = ["false"]\ntimeout = "1s"\ninterval = "100ms"\n'
              '[restart]\npolicy = "temporary"\n',
    )
    mgr = svmgr()
    mgr.wait_state("slow", "failed", timeout=20)
    leftover = read_int(shared_dir / "leftover", mgr)
    mgr.wait_for(lambda: not pid_alive(leftover), what="leftover killed")
    assert signal.SIGKILL  # (the signal the host asked for)


def _host_pid(init_pid: int, ns_pid: int) -> int:
    """A PID inside the container's PID namespace, as the host sees it."""
    ns = os.readlink(f"/proc/{init_pid}/ns/pid")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            if os.readlink(entry / "ns/pid") != ns:
                continue
        except OSError:
            continue
        m = re.search(r"^NSpid:\s+(\d+)\s+(\d+)", status, re.M)
        if m and int(m.group(2)) == ns_pid:
            return int(entry.name)
    raise LookupError(ns_pid)


def test_adopted_service_keeps_its_cgroup(tree: ConfigTree, tmp_path: Path,
                                          purge_cgroup: Callable[[str], None]) -> None:
    """dynamod-init restarts a crashed svmgr, which adopts the running
    services: the new one finds their cgroups (a per-instance tree is named
    after the runtime directory and PID namespace, so it is the same), kills
    a double-forked leftover with the service and removes the cgroup."""
    leftover_file = tmp_path / "leftover"  # (the container has a /run of its own)
    tree.simple("leaky", f"(setsid sleep 1000 & echo $! > {leftover_file}); exec sleep 1000")
    env = {k: v for k, v in os.environ.items() if k != "DYNAMOD_CGROUP_ROOT"}
    env.update(DYNAMOD_HEARTBEAT_INTERVAL="0.3", DYNAMOD_BACKOFF_MIN="0.1")
    path = ""
    try:
        with InitContainer(tree.root, tmp_path / "c", env=env) as c:
            c.wait_log("leaky: waiting-ready -> running")
            path = c.request("ServiceStatus", {"name": "leaky"})["service"]["extra"]["cgroup"]
            text = wait_until(lambda: leftover_file.exists() and leftover_file.read_text().strip(), "leftover")
            leftover = int(str(text))  # its PID inside the container
            # svmgr journals every change before it serves the next request
            # (docs/init.md): the ServiceStatus answered above came after
            # leaky's start was recorded.
            svmgr = int(re.findall(r"svmgr started \(pid (\d+)\)", c.log())[-1])
            os.kill(_host_pid(c.pid, svmgr), signal.SIGKILL)
            c.wait_log("adopted from the previous svmgr: leaky")
            info = c.request("ServiceStatus", {"name": "leaky"})["service"]
            assert info["state"] == "running" and info["extra"]["cgroup"] == path
            assert c.request("GetServiceByPid", {"pid": leftover})["name"] == "leaky"
            host_leftover = _host_pid(c.pid, leftover)
            c.request("StopService", {"name": "leaky"})
            c.wait_log("leaky: stopping -> stopped")
            wait_until(lambda: not pid_alive(host_leftover), "the leftover killed")
            wait_until(lambda: not os.path.exists(path), "the cgroup removed")
            c.signal(signal.SIGTERM)
            assert c.wait(30) == 0
        assert not os.path.exists(os.path.dirname(path))  # the tree goes with the manager
    finally:
        if path:
            purge_cgroup(os.path.dirname(path))

