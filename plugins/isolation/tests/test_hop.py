"""The manager's hop into a service's cgroup for the fork (hop.py), on this
machine's cgroup2 mount: where the manager is before, during and after,
what the child inherits, and the ways home when home has gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from dynamod_isolation.cgroups import cgroup2_mounts, pid_cgroup

from dynamod.testing import ConfigTree, Svmgr

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not cgroup2_mounts(), reason="needs root and a cgroup2 mount"
)

# Run in a child process: the hop moves the whole calling process, and the
# test runner itself must stay where it is.
SCRIPT = r"""
import json, os, subprocess, sys
from dynamod_isolation.cgroups import pid_cgroup
from dynamod_isolation.hop import Home

mount, home_dir, svc, action = sys.argv[1:5]
with open(os.path.join(home_dir, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
said = []
home = Home(mount, said.append)
out = {"home": home.path}
if action == "home-unwritable":
    home.path = "/proc/no-such-cgroup"
ran = []

def after():
    ran.append(pid_cgroup("self"))

with home.into(svc, after):
    out["inside"] = pid_cgroup("self")
    child = subprocess.Popen(["sleep", "30"])
    if action == "home-removed":
        os.rmdir(home_dir)
out["child"] = pid_cgroup(child.pid)
out["after_ran_in"] = ran
out["back"] = pid_cgroup("self")
out["usable"] = home.usable()
out["said"] = said
if action == "home-unwritable":
    home.path = home_dir
    # stuck outside home; a kill of svc must not be able to hit us
    with open(os.path.join(svc, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    home.leave(svc)
    out["after_leave"] = pid_cgroup("self")
child.kill()
child.wait()
print(json.dumps(out))
"""


def hop(cgroot: str, action: str = "") -> tuple[dict, str]:
    mount = os.path.dirname(cgroot)
    home_dir, svc = os.path.join(cgroot, "home"), os.path.join(cgroot, "svc")
    os.makedirs(home_dir)
    os.makedirs(svc)
    out = subprocess.run([sys.executable, "-c", SCRIPT, mount, home_dir, svc, action],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), "/" + os.path.relpath(cgroot, mount)


def test_child_is_born_in_the_cgroup_and_manager_goes_home(cgroot: str) -> None:
    out, rel = hop(cgroot)
    assert out["inside"] == f"{rel}/svc"
    assert out["child"] == f"{rel}/svc"
    assert out["back"] == f"{rel}/home"
    # late limits are written once the manager is home again
    assert out["after_ran_in"] == [f"{rel}/home"]
    assert out["usable"] and out["said"] == []


def test_home_removed_while_away_is_made_again(cgroot: str) -> None:
    out, rel = hop(cgroot, "home-removed")
    assert out["child"] == f"{rel}/svc"
    assert out["back"] == f"{rel}/home"
    assert out["usable"]
    assert any("recreated the manager's cgroup" in line for line in out["said"])


def test_no_way_home_ends_at_the_root_and_hopping_stops(cgroot: str) -> None:
    out, rel = hop(cgroot, "home-unwritable")
    assert out["child"] == f"{rel}/svc"
    assert out["back"] == "/"
    assert not out["usable"]
    assert any("could not return to its cgroup" in line and "shell step" in line
               for line in out["said"])
    # leave(): out of a cgroup about to be killed, home again
    assert out["after_leave"] == f"{rel}/home"


def test_manager_is_home_after_starting_services(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                                 cgroot: str) -> None:
    """A real svmgr with the plugin: every service in its cgroup, the
    manager back in its own."""
    for i in range(20):
        tree.simple(f"s{i}", "exec sleep 1000")
    mgr = svmgr(env={"DYNAMOD_CGROUP_JOIN": "hop"})
    home = pid_cgroup(mgr.proc.pid)
    pids = {}
    for i in range(20):
        info = mgr.wait_state(f"s{i}", "running")
        pids[i] = info["pid"]
    rel = "/" + os.path.relpath(cgroot, os.path.dirname(cgroot))
    for i, pid in pids.items():
        assert pid_cgroup(pid) == f"{rel}/s{i}.service"
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
    assert pid_cgroup(mgr.proc.pid) == home


def test_shell_join_still_available(tree: ConfigTree, svmgr: Callable[..., Svmgr], cgroot: str,
                                    shared_dir: Path) -> None:
    """$DYNAMOD_CGROUP_JOIN=shell (the way out, should hopping misbehave
    somewhere): the service joins through the shell step instead, and lands
    in the same cgroup."""
    tree.simple("a", f"cat /proc/self/cgroup > {shared_dir}/a; exec sleep 1000")
    mgr = svmgr(env={"DYNAMOD_CGROUP_JOIN": "shell"})
    info = mgr.wait_state("a", "running")
    rel = "/" + os.path.relpath(cgroot, os.path.dirname(cgroot))
    seen = mgr.wait_for(lambda: Path(shared_dir, "a").exists() and Path(shared_dir, "a").read_text())
    assert f"0::{rel}/a.service" in seen.splitlines()
    assert pid_cgroup(info["pid"]) == f"{rel}/a.service"


def test_auto_placement_follows_the_mount(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                          cgroot: str) -> None:
    """By default svmgr hops only where cgroup2 has favordynmods, and says
    which way it places services."""
    from dynamod_isolation.cgroups import mount_of, mount_options

    tree.simple("a", "exec sleep 1000")
    mgr = svmgr(env={"DYNAMOD_CGROUP_JOIN": "auto"})
    mgr.wait_state("a", "running")
    mount = mount_of(cgroot, cgroup2_mounts())
    assert mount is not None
    log = mgr.wait_for(lambda: "placement:" in mgr.log() and mgr.log(), what="the placement line")
    if "favordynmods" in mount_options(mount):
        assert "placement: the manager moves in for the fork" in log
    else:
        assert "placement: a shell step joins before exec" in log
