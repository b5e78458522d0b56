"""Dependencies at run time: requires (stop propagation and coming back),
wants, after/before, and Dinit-style activation (release of services that
were only pulled in)."""

from __future__ import annotations

import os
import signal
import time

from dynamod.testing import (
    deps,
    first_stamp,
    pid_alive,
    read_stamps,
    recording,
    stamp,
    started,
)

BARE = ["--no-plugins"]


def test_stopping_a_required_dependency_stops_dependents_first_and_they_come_back(
    tree, svmgr, tmp_path
):
    rec = tmp_path / "rec"
    tree.simple("db", recording(rec, "db"))
    tree.simple("app", recording(rec, "app", 0.2), extra=deps(requires=["db"]))
    tree.simple("web", recording(rec, "web", 0.2), extra=deps(requires=["app"]))
    mgr = svmgr(args=BARE)
    old = {n: mgr.wait_state(n, "running")["pid"] for n in ("db", "app", "web")}
    started(rec, "db", "app", "web")
    mgr.request("StopService", {"name": "db"})
    s = read_stamps(rec)
    assert first_stamp(s, "app term") > first_stamp(s, "web exit")
    assert first_stamp(s, "db term") > first_stamp(s, "app exit")
    assert mgr.status("db")["state"] == "stopped"
    assert mgr.status("app")["reason"] == "requires db, which was stopped"
    assert mgr.status("web")["reason"] == "requires app, which is blocked"
    assert not any(pid_alive(p) for p in old.values())
    # They stay explicitly active: when db is back, so are they.
    mgr.request("StartService", {"name": "db"})
    for n in ("app", "web"):
        info = mgr.wait_state(n, "running")
        assert info["pid"] != old[n]


def test_failure_of_a_running_dependency_stops_and_restarts_dependents(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple("db", recording(rec, "db"), extra='[restart]\ndelay = "300ms"\n')
    tree.simple("app", recording(rec, "app"), extra=deps(requires=["db"]))
    tree.simple("soft", recording(rec, "soft"), extra=deps(wants=["db"]))
    tree.simple("ordered", recording(rec, "ordered"), extra=deps(after=["db"]))
    mgr = svmgr(args=BARE)
    old = {n: mgr.wait_state(n, "running")["pid"] for n in ("db", "app", "soft", "ordered")}
    os.kill(old["db"], signal.SIGKILL)
    # app goes down with db and waits for it (pending), then comes back.
    mgr.wait_for(lambda: mgr.status("app")["state"] == "pending", what="app waits for db")
    assert mgr.status("db")["state"] == "restarting"
    info = mgr.wait_state("app", "running")
    assert info["pid"] != old["app"]
    assert mgr.status("db")["pid"] != old["db"]
    # wants and after are not hard: untouched.
    assert mgr.status("soft")["pid"] == old["soft"]
    assert mgr.status("ordered")["pid"] == old["ordered"]


def test_failed_dependency_blocks_until_it_is_started_again(tree, svmgr, tmp_path):
    flag = tmp_path / "ok"
    tree.simple(
        "db",
        f"[ -e {flag} ] || exit 1; exec sleep 1000",
        extra='[restart]\npolicy = "transient"\nmax-restarts = 0\n',
    )
    tree.simple("app", extra=deps(requires=["db"]))
    mgr = svmgr(args=BARE)
    assert mgr.wait_state("db", "failed")["reason"] == "exited 1; gave up after 0 restarts in 1m"
    mgr.wait_state("app", "blocked")
    flag.touch()
    mgr.request("StartService", {"name": "db"})
    mgr.wait_state("app", "running")


def test_wants_is_soft(tree, svmgr):
    tree.simple("helper", "exit 1", type="oneshot", extra='[restart]\npolicy = "temporary"\n')
    tree.simple("app", extra=deps(wants=["helper"]))
    mgr = svmgr(args=BARE)
    mgr.wait_state("helper", "failed")
    mgr.wait_state("app", "running")


def test_wants_and_after_order_the_start(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple("first", f"sleep 0.3; {stamp(rec, 'first done')}", type="oneshot")
    tree.simple(
        "second",
        f"sleep 0.2; {stamp(rec, 'second done')}",
        type="oneshot",
        extra=deps(before=["third"]),
    )
    tree.simple(
        "third", f"{stamp(rec, 'third start')}", type="oneshot", extra=deps(after=["first"])
    )
    tree.simple(
        "fourth", f"{stamp(rec, 'fourth start')}", type="oneshot", extra=deps(wants=["first"])
    )
    mgr = svmgr(args=BARE)
    for n in ("third", "fourth"):
        mgr.wait_state(n, "exited")
    s = read_stamps(rec)
    assert first_stamp(s, "third start") > first_stamp(s, "first done")
    assert first_stamp(s, "third start") > first_stamp(s, "second done")
    assert first_stamp(s, "fourth start") > first_stamp(s, "first done")


def test_after_does_not_pull_in(tree, svmgr):
    tree.simple("optional", enabled=False)
    tree.simple("app", extra=deps(after=["optional"]))
    mgr = svmgr(args=BARE)
    mgr.wait_state("app", "running")
    assert mgr.status("optional")["state"] == "stopped"


def test_dependency_pulled_in_only_by_a_service_is_released_with_it(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple("lib", recording(rec, "lib"), enabled=False)
    tree.simple("helper", recording(rec, "helper"), enabled=False)
    tree.simple("app", recording(rec, "app", 0.2), extra=deps(requires=["lib"], wants=["helper"]))
    mgr = svmgr(args=BARE)
    mgr.wait_state("app", "running")
    for n in ("lib", "helper"):
        info = mgr.wait_state(n, "running")
        assert info["explicit"] is False
    started(rec, "lib", "helper", "app")
    reply = mgr.request("StopService", {"name": "app"})["service"]
    assert reply["state"] == "stopped"
    for n in ("lib", "helper"):
        mgr.wait_state(n, "stopped")
    s = read_stamps(rec)
    # Released after the service that needed them is down.
    assert first_stamp(s, "lib term") > first_stamp(s, "app exit")
    # Starting it again pulls them in again.
    mgr.request("StartService", {"name": "app"})
    for n in ("lib", "helper"):
        mgr.wait_state(n, "running")


def test_shared_dependency_stays_while_anything_needs_it(tree, svmgr):
    tree.simple("lib", enabled=False)
    tree.simple("a", extra=deps(requires=["lib"]))
    tree.simple("b", extra=deps(wants=["lib"]))
    tree.simple("later", enabled=False)
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("lib", "running")["pid"]
    mgr.request("StopService", {"name": "a"})
    # A whole job after it: whatever a's stop decided about lib is done.
    mgr.request("StartService", {"name": "later"})
    assert mgr.status("lib")["pid"] == pid
    assert [t for t in mgr.transitions("lib") if t[2] == "stopping"] == []
    mgr.request("StopService", {"name": "b"})
    mgr.wait_state("lib", "stopped")


def test_explicitly_started_dependency_stays_when_dependents_stop(tree, svmgr):
    tree.simple("lib", enabled=False)
    tree.simple("app", enabled=False, extra=deps(requires=["lib"]))
    tree.simple("later", enabled=False)
    mgr = svmgr(args=BARE)
    mgr.request("StartService", {"name": "lib"})
    pid = mgr.status("lib")["pid"]
    mgr.request("StartService", {"name": "app"})
    mgr.request("StopService", {"name": "app"})
    # A whole job after it: whatever app's stop decided about lib is done.
    mgr.request("StartService", {"name": "later"})
    info = mgr.status("lib")
    assert info["state"] == "running" and info["pid"] == pid and info["explicit"] is True
    assert [t for t in mgr.transitions("lib") if t[2] == "stopping"] == []


def test_stop_of_explicit_dependency_does_not_release_what_others_need(tree, svmgr):
    # lib is needed by app (enabled) and was also started explicitly; stopping
    # lib stops it (explicit stop wins) and blocks app, releasing nothing else.
    tree.simple("lib")
    tree.simple("app", extra=deps(requires=["lib"]))
    tree.simple("other")
    mgr = svmgr(args=BARE)
    other = mgr.wait_state("other", "running")["pid"]
    mgr.wait_state("app", "running")
    mgr.request("StopService", {"name": "lib"})
    assert mgr.status("app")["state"] == "blocked"
    assert mgr.status("other")["pid"] == other


def test_stop_of_a_blocked_service_clears_it(tree, svmgr):
    tree.simple("base", "exit 1", type="oneshot", extra='[restart]\npolicy = "temporary"\n')
    tree.simple("app", extra=deps(requires=["base"]))
    mgr = svmgr(args=BARE)
    mgr.wait_state("app", "blocked")
    assert mgr.request("StopService", {"name": "app"})["service"]["state"] == "stopped"


def test_required_dependency_restarting_makes_start_wait(tree, svmgr, tmp_path):
    # db crashed and waits out its restart delay; starting app (which
    # requires it) waits for db instead of failing.
    trigger = tmp_path / "t"
    tree.simple(
        "db",
        f"while [ ! -e {trigger} ]; do sleep 0.05; done; rm -f {trigger}; exit 1",
        extra='[restart]\ndelay = "500ms"\n',
    )
    tree.simple("app", enabled=False, extra=deps(requires=["db"]))
    mgr = svmgr(args=BARE)
    mgr.wait_state("db", "running")
    trigger.touch()
    mgr.wait_state("db", "restarting")
    t0 = time.monotonic()
    reply = mgr.request("StartService", {"name": "app"})["service"]
    assert reply["state"] == "running"
    assert time.monotonic() - t0 >= 0.2
    assert mgr.status("db")["state"] == "running"


def test_ordering_on_a_service_that_stays_down_does_not_wait(tree, svmgr):
    # done is a transient service that finished cleanly: stopped, and not
    # coming back. Starting a service ordered after it must not wait for it.
    tree.simple("done", "exit 0", extra='[restart]\npolicy = "transient"\n')
    tree.simple("later", enabled=False, extra=deps(after=["done"]))
    mgr = svmgr(args=BARE)
    mgr.wait_state("done", "stopped")
    # done never comes back: a start waiting for it would hang the test.
    assert (
        mgr.request("StartService", {"name": "later"}, timeout=30)["service"]["state"] == "running"
    )


def test_released_while_restarting_does_not_strand_services_ordered_after_it(tree, svmgr, tmp_path):
    # lib (pulled in by app only) crashed and waits out its restart delay;
    # later (ordered after lib) is started and waits for it; then app stops,
    # releasing lib, which will not come back: later must go on.
    trigger = tmp_path / "t"
    tree.simple(
        "lib",
        f"while [ ! -e {trigger} ]; do sleep 0.05; done; exit 1",
        enabled=False,
        extra='[restart]\ndelay = "1h"\n',  # later waiting for it would hang the test
    )
    tree.simple("app", extra=deps(wants=["lib"]))
    tree.simple("later", enabled=False, extra=deps(after=["lib"]))
    mgr = svmgr(args=BARE)
    mgr.wait_state("lib", "running")
    trigger.touch()
    mgr.wait_state("lib", "restarting")
    import threading

    result = {}
    t = threading.Thread(
        target=lambda: result.update(mgr.request("StartService", {"name": "later"}, timeout=30))
    )
    t.start()
    try:
        mgr.wait_state("later", "pending")
        mgr.request("StopService", {"name": "app"})
        assert mgr.status("lib")["state"] == "stopped"
        mgr.wait_state("later", "running")
    finally:
        t.join(30)
    assert result["service"]["state"] == "running"


def test_restart_does_not_change_activation(tree, svmgr):
    tree.simple("lib", enabled=False)
    tree.simple("app", extra=deps(requires=["lib"]))
    mgr = svmgr(args=BARE)
    old = mgr.wait_state("lib", "running")["pid"]
    reply = mgr.request("RestartService", {"name": "lib"})["service"]
    assert reply["pid"] != old and reply["explicit"] is False
    mgr.wait_state("app", "running")
    mgr.request("StopService", {"name": "app"})
    mgr.wait_state("lib", "stopped")
