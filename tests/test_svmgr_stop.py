"""Stopping: StopService order, start/restart semantics, stop-exec,
stop-signal, stop-timeout and SIGKILL, and the ordered, parallel shutdown."""

from __future__ import annotations

import time

import pytest

from dynamod.ipc.client import RemoteError
from dynamod.testing import (
    deps,
    first_stamp,
    pid_alive,
    read_stamps,
    recording,
    stamp,
    started,
    wait_stamps,
)

BARE = ["--no-plugins"]


def up(rec):
    """Shell: stamp ``up`` (after the traps before it are set)."""
    return stamp(rec, "up")


def labels(rec):
    return [lab for lab, _ in read_stamps(rec) if lab != "up"]


def overlapping(stamps, names):
    """True if every one of ``names`` got its TERM before any of them
    exited (see :func:`recording`): their stops ran at the same time,
    shown by the services' own record, not by a clock."""
    terms = [first_stamp(stamps, n + " term") for n in names]
    exits = [first_stamp(stamps, n + " exit") for n in names]
    return max(terms) < min(exits)


def stopped_cleanly(reply):
    """The service went down by itself on the stop request: not killed
    after a stop timeout."""
    return reply["reason"] == "" and reply["exit"] == "exited 0"


def test_stop_service_stops_requirers_first_and_replies_when_done(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple("x", recording(rec, "x", 0.2))
    tree.simple("y1", recording(rec, "y1", 0.2), extra=deps(requires=["x"]))
    tree.simple("y2", recording(rec, "y2", 0.2), extra=deps(requires=["x"]))
    tree.simple("unrelated", recording(rec, "unrelated"))
    mgr = svmgr(args=BARE)
    pids = {n: mgr.wait_state(n, "running")["pid"] for n in ("x", "y1", "y2", "unrelated")}
    started(rec, "x", "y1", "y2", "unrelated")
    t0 = time.monotonic()
    reply = mgr.request("StopService", {"name": "x"})["service"]
    elapsed = time.monotonic() - t0
    assert reply["state"] == "stopped" and stopped_cleanly(reply)
    assert not pid_alive(pids["x"])
    s = read_stamps(rec)
    # The reply comes when x is down: its exit is on record already.
    assert "x exit" in [lab for lab, _ in s]
    # The two requirers stop in parallel, x only after both are gone.
    assert first_stamp(s, "x term") > max(first_stamp(s, "y1 exit"), first_stamp(s, "y2 exit"))
    assert overlapping(s, ["y1", "y2"])
    assert elapsed > 0.35  # two stops of 0.2 s in a row: y1/y2, then x
    assert mgr.status("unrelated")["pid"] == pids["unrelated"]


def test_start_of_a_running_service_is_a_no_op(tree, svmgr):
    tree.simple("web")
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("web", "running")["pid"]
    reply = mgr.request("StartService", {"name": "web"})["service"]
    assert reply["pid"] == pid
    assert reply["state"] == "running"
    assert [t for t in mgr.transitions("web") if t[2] == "starting"] == [
        ("web", "pending", "starting", "")
    ]


PROBE = (
    "if [ -e {lock} ] && kill -0 $(cat {lock}) 2>/dev/null; then echo ANOTHER INSTANCE RUNNING; exit 1; fi; "
    "echo $$ > {lock}; echo started $$; "
    "trap 'sleep 0.3; rm -f {lock}; exit 0' TERM; while :; do sleep 0.05; done"
)


def test_restart_never_leaves_two_instances(tree, svmgr, tmp_path):
    lock = tmp_path / "lock"
    tree.simple("probe", PROBE.format(lock=lock), extra='[restart]\npolicy = "temporary"\n')
    mgr = svmgr(args=BARE)
    old = mgr.wait_state("probe", "running")["pid"]
    for _ in range(3):
        # Signal it only once it holds the lock (and has its TERM trap).
        mgr.wait_logs("probe", f"started {old}")
        reply = mgr.request("RestartService", {"name": "probe"})["service"]
        assert reply["state"] == "running"
        assert reply["pid"] != old
        assert not pid_alive(old)
        old = reply["pid"]
    mgr.wait_for(lambda: lock.exists() and lock.read_text().strip() == str(old), what="lock file")
    time.sleep(0.2)
    assert mgr.status("probe")["state"] == "running"
    assert mgr.status("probe")["pid"] == old
    assert not any("ANOTHER INSTANCE" in x for x in mgr.logs("probe"))


def test_restart_of_a_stopped_service_starts_it(tree, svmgr):
    tree.simple("web", enabled=False)
    mgr = svmgr(args=BARE)
    assert mgr.request("RestartService", {"name": "web"})["service"]["state"] == "running"


def test_restart_also_restarts_requirers(tree, svmgr):
    tree.simple("db")
    tree.simple("app", extra=deps(requires=["db"]))
    mgr = svmgr(args=BARE)
    db = mgr.wait_state("db", "running")["pid"]
    app = mgr.wait_state("app", "running")["pid"]
    mgr.request("RestartService", {"name": "db"})
    assert mgr.status("db")["pid"] != db
    info = mgr.wait_state("app", "running")
    assert info["pid"] != app


def test_stop_exec_runs_instead_of_the_signal(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple(
        "svc",
        f"trap '{stamp(rec, 'got term')}' TERM; trap '{stamp(rec, 'got usr1')}; exit 0' USR1; "
        f"{up(rec)}; while :; do sleep 0.05; done",
        extra=(
            "[shutdown]\n"
            'stop-exec = ["/bin/sh", "-c", "echo stopping $MAINPID; kill -USR1 $MAINPID"]\n'
            'stop-timeout = "1h"\n'  # waiting it out would hang the test
        ),
    )
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("svc", "running")["pid"]
    wait_stamps(rec, ["up"])
    reply = mgr.request("StopService", {"name": "svc"}, timeout=30)["service"]
    # Down through stop-exec alone: no signal, no stop timeout waited out.
    assert reply["state"] == "stopped" and stopped_cleanly(reply)
    assert labels(rec) == ["got usr1"]
    # The control process's output lands in the service's log.
    assert f"stopping {pid}" in mgr.wait_logs("svc", "stopping")


def test_stop_exec_then_signal_after_stop_timeout(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple(
        "svc",
        f"trap '{stamp(rec, 'got term')}; exit 0' TERM; {up(rec)}; while :; do sleep 0.05; done",
        extra='[shutdown]\nstop-exec = ["/bin/true"]\nstop-timeout = "300ms"\n',
    )
    mgr = svmgr(args=BARE)
    mgr.wait_state("svc", "running")
    wait_stamps(rec, ["up"])
    t0 = time.monotonic()
    reply = mgr.request("StopService", {"name": "svc"})["service"]
    assert time.monotonic() - t0 > 0.25  # the stop-timeout was waited out
    # Then the signal, which it obeys: not killed after a second timeout.
    assert labels(rec) == ["got term"]
    assert reply["exit"] == "exited 0"


def test_failing_stop_exec_falls_back_to_the_signal_at_once(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple(
        "svc",
        f"trap '{stamp(rec, 'got term')}; exit 0' TERM; {up(rec)}; while :; do sleep 0.05; done",
        # "at once": a stop that waited out this timeout would hang the test.
        extra='[shutdown]\nstop-exec = ["/bin/sh", "-c", "echo cannot stop; exit 5"]\nstop-timeout = "1h"\n',
    )
    mgr = svmgr(args=BARE)
    mgr.wait_state("svc", "running")
    wait_stamps(rec, ["up"])
    reply = mgr.request("StopService", {"name": "svc"}, timeout=30)["service"]
    assert stopped_cleanly(reply)
    assert labels(rec) == ["got term"]
    lines = mgr.logs("svc")
    assert "cannot stop" in lines
    assert any("stop-exec exited 5" in x for x in lines)


def test_hanging_stop_exec_is_killed(tree, svmgr, tmp_path):
    pidfile = tmp_path / "ctl.pid"
    tree.simple(
        "svc",
        extra=f'[shutdown]\nstop-exec = ["/bin/sh", "-c", "echo $$ > {pidfile}; exec sleep 100"]\nstop-timeout = "300ms"\n',
    )
    mgr = svmgr(args=BARE)
    mgr.wait_state("svc", "running")
    mgr.request("StopService", {"name": "svc"})
    ctl = int(pidfile.read_text())
    mgr.wait_for(lambda: not pid_alive(ctl), what="stop-exec process killed")  # not its own exit in 100 s


def test_stop_signal_is_used(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple(
        "svc",
        f"trap '' TERM; trap '{stamp(rec, 'got usr2')}; exit 0' USR2; {up(rec)}; while :; do sleep 0.05; done",
        extra='[shutdown]\nstop-signal = "SIGUSR2"\nstop-timeout = "1h"\n',
    )
    mgr = svmgr(args=BARE)
    mgr.wait_state("svc", "running")
    wait_stamps(rec, ["up"])
    reply = mgr.request("StopService", {"name": "svc"}, timeout=30)["service"]
    assert reply["state"] == "stopped" and stopped_cleanly(reply)
    assert labels(rec) == ["got usr2"]


def test_stop_timeout_then_sigkill(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple(
        "stubborn",
        f"trap '' TERM; {up(rec)}; while :; do sleep 0.05; done",
        extra='[shutdown]\nstop-timeout = "300ms"\n',
    )
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("stubborn", "running")["pid"]
    wait_stamps(rec, ["up"])
    t0 = time.monotonic()
    reply = mgr.request("StopService", {"name": "stubborn"})["service"]
    assert time.monotonic() - t0 > 0.25  # the stop-timeout was waited out
    assert reply["state"] == "stopped"
    assert reply["reason"] == "killed after stop timeout (300ms)"
    assert reply["exit"] == "killed by SIGKILL"
    assert not pid_alive(pid)
    assert any("killing" in x for x in mgr.logs("stubborn"))


def test_stop_kills_the_whole_process_group(tree, svmgr, tmp_path):
    pidfile = tmp_path / "child.pid"
    tree.simple("svc", f"sleep 1000 & echo $! > {pidfile}; wait")
    mgr = svmgr(args=BARE)
    mgr.wait_state("svc", "running")
    mgr.wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="child pid")
    child = int(pidfile.read_text())
    mgr.request("StopService", {"name": "svc"})
    mgr.wait_for(lambda: not pid_alive(child), what="child gone")


def test_shutdown_uses_the_same_stop_path(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple(
        "stubborn",
        f"trap '' TERM; {up(rec)}; while :; do sleep 0.05; done",
        extra='[shutdown]\nstop-timeout = "300ms"\n',
    )
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("stubborn", "running")["pid"]
    wait_stamps(rec, ["up"])
    assert mgr.stop() == 0
    assert not pid_alive(pid)
    assert (
        "stubborn",
        "stopping",
        "stopped",
        "killed after stop timeout (300ms)",
    ) in mgr.transitions("stubborn")


def test_shutdown_stops_independent_services_in_parallel(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    names = [f"svc{i}" for i in range(10)]
    for n in names:
        tree.simple(n, recording(rec, n, 0.5))
    mgr = svmgr(args=BARE)
    for n in names:
        mgr.wait_state(n, "running")
    started(rec, *names)
    assert mgr.stop() == 0
    s = read_stamps(rec)
    assert len([lab for lab, _ in s if lab.endswith(" exit")]) == 10
    # All ten were stopping at once (in sequence, each TERM would follow
    # the previous exit); how fast a shutdown is: bench/run --only shutdown.
    assert overlapping(s, names), s


def test_shutdown_stops_a_chain_top_down(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple("c1", recording(rec, "c1", 0.1))
    tree.simple("c2", recording(rec, "c2", 0.1), extra=deps(requires=["c1"]))
    tree.simple("c3", recording(rec, "c3", 0.1), extra=deps(after=["c2"]))
    tree.simple("c4", recording(rec, "c4", 0.1), extra=deps(wants=["c3"]))
    mgr = svmgr(args=BARE)
    for n in ("c1", "c2", "c3", "c4"):
        mgr.wait_state(n, "running")
    started(rec, "c1", "c2", "c3", "c4")
    assert mgr.stop() == 0
    s = read_stamps(rec)
    assert first_stamp(s, "c3 term") > first_stamp(s, "c4 exit")
    assert first_stamp(s, "c2 term") > first_stamp(s, "c3 exit")
    assert first_stamp(s, "c1 term") > first_stamp(s, "c2 exit")


def test_requests_during_shutdown_are_refused(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple("slow", f"trap 'sleep 1; exit 0' TERM; {up(rec)}; while :; do sleep 0.05; done")
    tree.simple("other", enabled=False)
    mgr = svmgr(args=BARE)
    mgr.wait_state("slow", "running")
    wait_stamps(rec, ["up"])
    mgr.request("Shutdown", {"kind": "poweroff"})
    with pytest.raises(RemoteError) as exc:
        mgr.request("StartService", {"name": "other"})
    assert "shutting down" in exc.value.message
    assert mgr.wait_exit() == 0


def test_shutdown_during_restart_delay_and_pending_starts(tree, svmgr, tmp_path):
    pidfile = tmp_path / "setup.pid"
    # Neither the delay nor the oneshot is waited for: either would hang the test.
    tree.simple("crashy", "exit 1", extra='[restart]\ndelay = "1h"\n')
    tree.simple("setup", f"echo $$ > {pidfile}; exec sleep 100", type="oneshot")
    tree.simple("app", extra=deps(requires=["setup"]))
    mgr = svmgr(args=BARE)
    mgr.wait_state("crashy", "restarting")
    mgr.wait_state("setup", "starting")
    assert mgr.status("app")["state"] == "pending"
    mgr.wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="setup's pid")
    assert mgr.stop() == 0
    assert not pid_alive(int(pidfile.read_text()))
    final = {}
    for name, _old, new, _reason in mgr.transitions():
        final[name] = new
    assert final == {"crashy": "stopped", "setup": "stopped", "app": "stopped"}
    assert ("app", "pending", "starting", "") not in mgr.transitions("app")
