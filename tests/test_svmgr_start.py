"""Starting: the dynamic frontier, visible states, spawn failures and
blocked services with their reasons."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dynamod.ipc.client import RemoteError
from dynamod.testing import deps, first_stamp, read_stamps, stamp, wait_stamps

BARE = ["--no-plugins"]
TEMPORARY = '[restart]\npolicy = "temporary"\n'


def test_start_states_are_visible_to_subscribers(tree, svmgr):
    tree.simple("web", enabled=False)
    mgr = svmgr(args=BARE)
    with mgr.client() as c:
        c.request("Subscribe")
        c.request("StartService", {"name": "web"})
        seen = []
        for ev in c.events(timeout=5):
            if ev.body["name"] == "web":
                seen.append((ev.body["old"], ev.body["new"]))
            if seen and seen[-1][1] == "running":
                break
    assert seen == [
        ("stopped", "pending"),
        ("pending", "starting"),
        ("starting", "waiting-ready"),
        ("waiting-ready", "running"),
    ]


@pytest.mark.parametrize(
    ("service_keys", "extra", "reason"),
    [
        (
            {"exec_override": ["/nonexistent/bin/daemon"]},
            "",
            "executable /nonexistent/bin/daemon not found",
        ),
        (
            {"exec_override": ["no-such-program-dynamod"]},
            "",
            "executable 'no-such-program-dynamod' not found in PATH",
        ),
        ({"workdir": "/nonexistent/dir"}, "", "working directory /nonexistent/dir does not exist"),
        (
            {},
            '[service.user]\nuser = "no-such-user-dynamod"\n',
            "unknown user 'no-such-user-dynamod'",
        ),
        ({}, '[service.user]\nuser = "nobody"\ngroup = "no-such-group-dynamod"\n', "unknown group"),
        (
            {"environment_file": "/nonexistent/env"},
            "",
            "environment file /nonexistent/env not found",
        ),
    ],
    ids=[
        "missing-executable",
        "not-in-path",
        "bad-workdir",
        "unknown-user",
        "unknown-group",
        "missing-env-file",
    ],
)
def test_spawn_failure_is_a_failure_never_ready(tree, svmgr, service_keys, extra, reason):
    keys = dict(service_keys)
    exec_override = keys.pop("exec_override", None)
    path = tree.simple("bad", extra=TEMPORARY + extra, **keys)
    if exec_override is not None:
        text = path.read_text().splitlines()
        text[2] = "exec = [" + ", ".join(f'"{a}"' for a in exec_override) + "]"
        path.write_text("\n".join(text) + "\n")
    tree.simple("dependent", extra=deps(requires=["bad"]))
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("bad", "failed")
    assert info["reason"].startswith("spawn failed: ")
    assert reason in info["reason"]
    assert info["pid"] is None
    news = [new for _n, _o, new, _r in mgr.transitions("bad")]
    assert "running" not in news and "waiting-ready" not in news
    dep = mgr.wait_state("dependent", "blocked")
    assert dep["reason"] == "requires bad, which failed"
    # An explicit start reports the failure with its reason.
    with pytest.raises(RemoteError) as exc:
        mgr.request("StartService", {"name": "bad"})
    assert reason in exc.value.message


def test_spawn_failure_under_permanent_policy_retries_then_gives_up(tree, svmgr):
    path = tree.simple("bad", extra='[restart]\ndelay = "100ms"\nmax-restarts = 2\n')
    path.write_text(
        path.read_text().replace('exec = ["/bin/sh", "-c", ', 'exec = ["/nonexistent/x", ')
    )
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("bad", "failed", timeout=5)
    assert "spawn failed" in info["reason"]
    assert "gave up after 2 restarts" in info["reason"]
    assert info["restarts"] == 2


def test_blocked_services_are_reported_transitively_and_ordering_dependents_start(tree, svmgr):
    tree.simple("base", "exit 1", type="oneshot", extra=TEMPORARY)
    tree.simple("mid", extra=deps(requires=["base"]))
    tree.simple("top", extra=deps(requires=["mid"]))
    tree.simple("top2", extra=deps(requires=["top"], wants=["base"]))
    tree.simple("soft", extra=deps(wants=["base"]))
    tree.simple("ordered", extra=deps(after=["base"]))
    tree.simple("ordered2", extra=deps(after=["mid"]))
    tree.simple("early", extra=deps(before=["mid"]))
    mgr = svmgr(args=BARE)
    assert mgr.wait_state("base", "failed")["reason"] == "exited 1"
    assert mgr.wait_state("mid", "blocked")["reason"] == "requires base, which failed"
    assert mgr.wait_state("top", "blocked")["reason"] == "requires mid, which is blocked"
    assert mgr.wait_state("top2", "blocked")["reason"] == "requires top, which is blocked"
    for name in ("soft", "ordered", "ordered2", "early"):
        mgr.wait_state(name, "running")
    # The list shows every blocked service with its reason.
    listed = mgr.services()
    assert {n for n, s in listed.items() if s["state"] == "blocked"} == {"mid", "top", "top2"}
    assert all(listed[n]["reason"] for n in ("mid", "top", "top2"))
    # Starting a blocked service explains why it cannot start.
    with pytest.raises(RemoteError) as exc:
        mgr.request("StartService", {"name": "top"})
    assert "blocked" in exc.value.message


def test_dependents_start_only_after_requires_are_ready_and_in_parallel(tree, svmgr, tmp_path):
    rec, gate = tmp_path / "rec", tmp_path / "gate"
    # base is ready only once free has started: free waiting for base would
    # hold up both for good.
    tree.simple(
        "base",
        f"{stamp(rec, 'base start')}; until grep -q '^free start' {rec}; do sleep 0.05; done; "
        f"sleep 0.2; {stamp(rec, 'base ready')}",
        type="oneshot",
    )
    # x, y and z each hold their start until the test opens the gate, which
    # it does once all three began: released together (had the manager
    # started them one after another, the second would never start).
    for name in ("x", "y", "z"):
        tree.simple(
            name,
            f"{stamp(rec, name + ' start')}; while [ ! -e {gate} ]; do sleep 0.05; done",
            type="oneshot",
            extra=deps(requires=["base"]),
        )
    tree.simple("free", f"{stamp(rec, 'free start')}; trap 'exit 0' TERM; while :; do sleep 0.1; done")
    mgr = svmgr(args=BARE)
    try:
        wait_stamps(rec, ["x start", "y start", "z start", "free start"])
    finally:
        gate.touch()
    for name in ("x", "y", "z"):
        mgr.wait_state(name, "exited")
    s = read_stamps(rec)
    ready = first_stamp(s, "base ready")
    starts = [first_stamp(s, f"{n} start") for n in ("x", "y", "z")]
    assert min(starts) > ready
    # The independent service did not wait for base.
    assert first_stamp(s, "free start") < ready


def test_start_pulls_in_required_dependencies_first(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple("db", f"sleep 0.3; {stamp(rec, 'db ready')}", type="oneshot", enabled=False)
    tree.simple(
        "web",
        f"{stamp(rec, 'web start')}; exec sleep 1000",
        enabled=False,
        extra=deps(requires=["db"]),
    )
    mgr = svmgr(args=BARE)
    assert mgr.status("db")["state"] == "stopped"
    t0 = time.monotonic()
    reply = mgr.request("StartService", {"name": "web"})["service"]
    assert time.monotonic() - t0 >= 0.25
    assert reply["state"] == "running"
    assert mgr.status("db")["state"] == "exited"
    assert mgr.status("db")["explicit"] is False
    mgr.wait_for(lambda: len(read_stamps(rec)) == 2, what="web's stamp")
    s = read_stamps(rec)
    assert first_stamp(s, "web start") > first_stamp(s, "db ready")


def test_restart_after_failure_applies_readiness_and_ordering_again(tree, svmgr, tmp_path):
    # A dependency that crashes is restarted; its requires-dependent is
    # stopped with it and waits for it to be *ready* again (readiness applies
    # to restarts, not just to boot). A forking service is ready when its
    # start process exits, which the start process itself records.
    rec = tmp_path / "rec"
    pidfile = tmp_path / "db.pid"
    tree.simple(
        "db",
        f"{stamp(rec, 'db start')}; sleep 0.3; sh -c 'sleep 1000 & echo $! > {pidfile}'; "
        f"{stamp(rec, 'db ready')}",
        type="forking",
        pid_file=str(pidfile),
        extra='[restart]\ndelay = "100ms"\n',
    )
    tree.simple(
        "setup",
        f"{stamp(rec, 'setup start')}; sleep 0.1",
        type="oneshot",
        extra=deps(requires=["db"]),
    )
    mgr = svmgr(args=BARE)
    mgr.wait_state("setup", "exited")
    first = mgr.status("db")["main_pid"]
    os.kill(first, signal.SIGKILL)
    mgr.wait_for(
        lambda: len([x for x in read_stamps(rec) if x[0] == "setup start"]) == 2,
        what="setup started again",
    )
    mgr.wait_state("setup", "exited")
    assert mgr.status("db")["main_pid"] != first
    s = read_stamps(rec)
    labels = [lab for lab, _ns in s]
    assert labels == ["db start", "db ready", "setup start"] * 2
    transitions = [(o, n) for _s, o, n, _r in mgr.transitions("setup")]
    assert ("exited", "stopping") in transitions
