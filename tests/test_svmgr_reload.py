"""Reload (the Reload request and SIGHUP): added, removed, changed and
unchanged services and supervisors; an invalid configuration changes
nothing."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dynamod.ipc.client import RemoteError
from dynamod.testing import deps, pid_alive

BARE = ["--no-plugins"]
ECHO_ENV = "echo version=$VERSION; trap 'exit 0' TERM; while :; do sleep 0.05; done"


def test_reload_adds_removes_changes_and_leaves_the_rest_alone(tree, svmgr):
    tree.simple("same")
    tree.simple("changed", ECHO_ENV, environment={"VERSION": "1"})
    tree.simple("gone")
    tree.simple("idle", enabled=False)
    mgr = svmgr(args=BARE)
    old = {n: mgr.wait_state(n, "running")["pid"] for n in ("same", "changed", "gone")}
    tree.simple("changed", ECHO_ENV, environment={"VERSION": "2"})
    tree.remove("gone")
    tree.simple("added")
    tree.simple("added-disabled", enabled=False)
    result = mgr.request("Reload")
    assert sorted(result["added"]) == ["added", "added-disabled"]
    assert result["removed"] == ["gone"]
    assert result["changed"] == ["changed"]
    assert mgr.status("same")["pid"] == old["same"]
    info = mgr.wait_state("changed", "running")
    assert info["pid"] != old["changed"]
    assert not pid_alive(old["changed"])
    assert "version=2" in mgr.wait_logs("changed", "version=2")
    assert "gone" not in mgr.services()
    assert not pid_alive(old["gone"])
    with pytest.raises(RemoteError) as exc:
        mgr.status("gone")
    assert exc.value.code == "unknown-service"
    mgr.wait_state("added", "running")
    assert mgr.status("added-disabled")["state"] == "stopped"
    assert mgr.status("idle")["state"] == "stopped"


def test_sighup_reloads(tree, svmgr):
    tree.simple("same")
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("same", "running")["pid"]
    tree.simple("added")
    os.kill(mgr.pid, signal.SIGHUP)
    mgr.wait_state("added", "running")
    assert mgr.status("same")["pid"] == pid


def test_invalid_config_changes_nothing_and_reports_errors(tree, svmgr):
    tree.simple("same")
    tree.simple("other")
    mgr = svmgr(args=BARE)
    pids = {n: mgr.wait_state(n, "running")["pid"] for n in ("same", "other")}
    tree.remove("other")
    tree.simple("added")
    tree.simple("broken", extra='[restart]\npolicy = "sometimes"\n')
    tree.simple("needy", extra=deps(requires=["nonexistent"]))
    with pytest.raises(RemoteError) as exc:
        mgr.request("Reload")
    assert exc.value.code == "failed"
    assert "nothing changed" in exc.value.message
    details = "\n".join(exc.value.details)
    assert "services/broken.toml" in details and "restart.policy" in details
    assert "nonexistent" in details
    assert set(mgr.services()) == {"same", "other"}
    for n, pid in pids.items():
        assert mgr.status(n)["pid"] == pid
    # SIGHUP with the same tree: refused and logged, nothing changes either.
    os.kill(mgr.pid, signal.SIGHUP)
    mgr.wait_for(lambda: "reload refused" in mgr.log(), what="refusal logged")
    assert set(mgr.services()) == {"same", "other"}


def test_changed_dependency_is_restarted_with_its_new_config(tree, svmgr):
    # Stopping the changed service stops its requirer, which wants to come
    # back at once: that must not bring the service back with its old config.
    tree.simple("db", ECHO_ENV, environment={"VERSION": "1"})
    tree.simple("app", extra=deps(requires=["db"]))
    mgr = svmgr(args=BARE)
    db = mgr.wait_state("db", "running")["pid"]
    app = mgr.wait_state("app", "running")["pid"]
    tree.simple("db", ECHO_ENV, environment={"VERSION": "2"})
    assert mgr.request("Reload")["changed"] == ["db"]
    new_db = mgr.wait_state("db", "running")["pid"]
    assert new_db != db
    mgr.wait_logs("db", "version=2")
    assert [x for x in mgr.logs("db") if x.startswith("version=")] == ["version=1", "version=2"]
    info = mgr.wait_state("app", "running")
    assert info["pid"] != app
    time.sleep(0.2)  # a window for a second, wrong restart of db
    assert mgr.status("db")["pid"] == new_db
    starts = [t for t in mgr.transitions("db") if t[2] == "starting"]
    assert len(starts) == 2


def test_reload_of_an_added_dependency_chain(tree, svmgr):
    tree.simple("base")
    mgr = svmgr(args=BARE)
    mgr.wait_state("base", "running")
    tree.simple("lib", enabled=False)
    tree.simple("app", extra=deps(requires=["lib", "base"]))
    mgr.request("Reload")
    mgr.wait_state("app", "running")
    assert mgr.status("lib")["state"] == "running"


def test_enabling_a_service_by_reload_starts_it_and_disabling_stops_it(tree, svmgr):
    tree.simple("svc", enabled=False)
    tree.simple("other")
    mgr = svmgr(args=BARE)
    mgr.wait_state("other", "running")
    assert mgr.status("svc")["state"] == "stopped"
    tree.simple("svc", enabled=True)
    mgr.request("Reload")
    mgr.wait_state("svc", "running")
    tree.simple("svc", enabled=False)
    mgr.request("Reload")
    mgr.wait_state("svc", "stopped")


def test_changed_failed_service_is_started_again(tree, svmgr):
    tree.simple("svc", "exit 1", extra='[restart]\npolicy = "transient"\nmax-restarts = 0\n')
    mgr = svmgr(args=BARE)
    mgr.wait_state("svc", "failed")
    tree.simple("svc", extra='[restart]\npolicy = "transient"\nmax-restarts = 0\n')
    mgr.request("Reload")
    mgr.wait_state("svc", "running")


def test_explicitly_stopped_service_stays_stopped_across_unrelated_reload(tree, svmgr):
    tree.simple("svc")
    mgr = svmgr(args=BARE)
    mgr.wait_state("svc", "running")
    mgr.request("StopService", {"name": "svc"})
    tree.simple("added")
    mgr.request("Reload")
    mgr.wait_state("added", "running")
    assert mgr.status("svc")["state"] == "stopped"


def test_supervisors_reload(tree, svmgr):
    tree.supervisor("apps", '[supervisor]\nname = "apps"\nstrategy = "one-for-one"\n')
    for n in ("a1", "a2"):
        tree.simple(n, supervisor="apps", extra='[restart]\ndelay = "100ms"\n')
    mgr = svmgr(args=BARE)
    pids = {n: mgr.wait_state(n, "running")["pid"] for n in ("a1", "a2")}
    tree.supervisor("apps", '[supervisor]\nname = "apps"\nstrategy = "one-for-all"\n')
    tree.supervisor("more", '[supervisor]\nname = "more"\n')
    tree.simple("m1", supervisor="more")
    result = mgr.request("Reload")
    assert result["added"] == ["m1"]
    assert result["changed"] == []
    # Unchanged services keep running under the changed supervisor...
    assert {n: mgr.status(n)["pid"] for n in pids} == pids
    mgr.wait_state("m1", "running")
    root = mgr.request("TreeStatus")["root"]
    kinds = {c["name"]: c for c in root["children"]}
    assert kinds["apps"]["strategy"] == "one-for-all"
    assert [c["name"] for c in kinds["more"]["children"]] == ["m1"]
    # ...which now applies its new strategy.
    os.kill(pids["a1"], signal.SIGKILL)
    mgr.wait_for(
        lambda: all(
            mgr.status(n)["state"] == "running" and mgr.status(n)["pid"] != pids[n] for n in pids
        ),
        what="one-for-all restart",
    )


def test_removing_a_supervisor_and_its_services(tree, svmgr):
    tree.supervisor("apps", '[supervisor]\nname = "apps"\n')
    tree.simple("a1", supervisor="apps")
    tree.simple("keep")
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("a1", "running")["pid"]
    tree.remove("a1")
    tree.remove_supervisor("apps")
    assert mgr.request("Reload")["removed"] == ["a1"]
    assert not pid_alive(pid)
    root = mgr.request("TreeStatus")["root"]
    assert [c["name"] for c in root["children"]] == ["keep"]
