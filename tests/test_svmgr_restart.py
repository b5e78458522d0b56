"""Restart policies, delays that never block the manager, and per-service
restart intensity."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dynamod.ipc.client import RemoteError
from dynamod.testing import pid_alive, stamp, wait_stamps

BARE = ["--no-plugins"]


def restart(policy: str, delay: str = "100ms", max_restarts: int = 5, window: str = "60s") -> str:
    return (
        f'[restart]\npolicy = "{policy}"\ndelay = "{delay}"\n'
        f'max-restarts = {max_restarts}\nmax-restart-window = "{window}"\n'
    )


def kill_and_wait_new_pid(mgr, name, sig=signal.SIGKILL):
    old = mgr.wait_state(name, "running")["pid"]
    os.kill(old, sig)
    return mgr.wait_for(
        lambda: (i := mgr.status(name))["state"] == "running" and i["pid"] != old and i,
        what=f"{name} restarted",
    )


@pytest.mark.parametrize(
    ("policy", "code", "restarted", "final"),
    [
        ("permanent", 0, True, None),
        ("permanent", 3, True, None),
        ("transient", 0, False, "stopped"),
        ("transient", 3, True, None),
        ("temporary", 0, False, "stopped"),
        ("temporary", 3, False, "failed"),
    ],
)
def test_restart_policy(tree, svmgr, tmp_path, policy, code, restarted, final):
    trigger = tmp_path / "trigger"
    runs = tmp_path / "runs"
    tree.simple(
        "svc",
        f"echo run >> {runs}; while [ ! -e {trigger} ]; do sleep 0.05; done; rm -f {trigger}; exit {code}",
        extra=restart(policy),
    )
    mgr = svmgr(args=BARE)
    first = mgr.wait_state("svc", "running")["pid"]
    trigger.touch()
    if restarted:
        info = mgr.wait_for(
            lambda: (i := mgr.status("svc"))["state"] == "running" and i["pid"] != first and i,
            what="restart",
        )
        assert info["restarts"] == 1
        mgr.wait_for(lambda: runs.read_text().count("run") == 2, what="second run")
        assert ("svc", "running", "restarting", f"exited {code}") in mgr.transitions("svc")
    else:
        info = mgr.wait_state("svc", final)
        assert info["reason"] == f"exited {code}"
        time.sleep(0.3)  # longer than the delay: nothing comes back
        assert mgr.status("svc")["state"] == final
        assert runs.read_text().count("run") == 1


def restartings(mgr, name):
    return [t for t in mgr.transitions(name) if t[2] == "restarting"]


def test_restart_delay_never_blocks_the_manager(tree, svmgr, tmp_path):
    tree.simple("crashy", "sleep 0.2; exit 1", extra=restart("permanent", delay="2s"))
    tree.simple("other", enabled=False)
    mgr = svmgr(args=BARE)
    counted = mgr.wait_state("crashy", "restarting")["restarts"]
    t_down = time.monotonic()
    # The manager answers while the delay runs and starts other services
    # meanwhile: when both replies are in, crashy still waits out its first
    # delay (one blocked by it would answer after crashy came back).
    mgr.services()
    assert mgr.request("StartService", {"name": "other"})["service"]["state"] == "running"
    assert mgr.status("crashy")["state"] == "restarting"
    assert len(restartings(mgr, "crashy")) == 1
    assert mgr.status("crashy")["restarts"] == counted
    # The delay itself is honoured.
    mgr.wait_for(
        lambda: mgr.status("crashy")["state"] != "restarting", timeout=6, what="delay over"
    )
    assert time.monotonic() - t_down >= 1.8


def test_max_restarts_within_window_gives_up_with_reason(tree, svmgr, tmp_path):
    runs = tmp_path / "runs"
    tree.simple("crashy", f"echo run >> {runs}; exit 2", extra=restart("permanent", max_restarts=2))
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("crashy", "failed", timeout=5)
    assert info["reason"] == "exited 2; gave up after 2 restarts in 1m"
    assert info["restarts"] == 2
    time.sleep(0.3)
    assert runs.read_text().count("run") == 3
    assert mgr.status("crashy")["state"] == "failed"


def test_restarts_outside_the_window_do_not_count(tree, svmgr, tmp_path):
    runs = tmp_path / "runs"
    # One restart allowed per 300 ms; the service crashes every ~400 ms.
    tree.simple(
        "crashy",
        f"echo run >> {runs}; sleep 0.3; exit 2",
        extra=restart("permanent", max_restarts=1, window="300ms"),
    )
    mgr = svmgr(args=BARE)
    mgr.wait_for(
        lambda: runs.exists() and runs.read_text().count("run") >= 4, timeout=10, what="4 runs"
    )
    assert mgr.status("crashy")["state"] != "failed"


def test_explicit_start_after_giving_up_resets_the_count(tree, svmgr, tmp_path):
    tree.simple("crashy", "sleep 0.1; exit 2", extra=restart("permanent", max_restarts=1))
    mgr = svmgr(args=BARE)
    mgr.wait_state("crashy", "failed", timeout=5)
    # Started again by hand, it is restarted again as configured before it
    # gives up (the start itself succeeds: the process is running).
    assert mgr.request("StartService", {"name": "crashy"})["service"]["state"] == "running"
    info = mgr.wait_state("crashy", "failed", timeout=5)
    assert "gave up after 1 restarts" in info["reason"]
    assert info["restarts"] == 2


@pytest.mark.parametrize("delay", ["1h", "600ms"])
def test_explicit_stop_during_restart_delay_wins(tree, svmgr, tmp_path, delay):
    # With 1h: the stop does not wait for the delay (it would hang the test).
    # With 600ms: the delay's end, waited out below, does not undo the stop.
    runs = tmp_path / "runs"
    tree.simple(
        "crashy",
        f"echo run >> {runs}; sleep 0.1; exit 1",
        extra=restart("permanent", delay=delay),
    )
    mgr = svmgr(args=BARE)
    mgr.wait_state("crashy", "restarting")
    reply = mgr.request("StopService", {"name": "crashy"}, timeout=30)["service"]
    assert reply["state"] == "stopped"
    assert runs.read_text().count("run") == 1
    if delay == "600ms":
        time.sleep(0.9)  # the moment the restart was due passes
    assert mgr.status("crashy")["state"] == "stopped"
    assert runs.read_text().count("run") == 1


def test_explicit_stop_is_never_undone_by_the_restart_policy(tree, svmgr, tmp_path):
    # It exits non-zero on TERM: still an explicit stop, not a failure.
    tree.simple(
        "svc",
        "trap 'exit 7' TERM; while :; do sleep 0.05; done",
        extra=restart("permanent", delay="100ms"),
    )
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("svc", "running")["pid"]
    reply = mgr.request("StopService", {"name": "svc"})["service"]
    assert reply["state"] == "stopped"
    assert not pid_alive(pid)
    time.sleep(0.4)
    info = mgr.status("svc")
    assert info["state"] == "stopped"
    assert info["restarts"] == 0


def test_repeated_crashes_restart_one_instance_each_time(tree, svmgr, tmp_path):
    # A service killed twice in a row is restarted once per crash and only
    # one instance ever runs.
    runs = tmp_path / "runs"
    tree.simple(
        "svc",
        f"echo $$ >> {runs}; trap 'exit 0' TERM; while :; do sleep 0.05; done",
        extra=restart("permanent", delay="100ms"),
    )
    mgr = svmgr(args=BARE)

    def recorded(pid):
        mgr.wait_for(
            lambda: runs.exists() and str(pid) in runs.read_text().split(), what=f"{pid} recorded"
        )

    recorded(mgr.wait_state("svc", "running")["pid"])
    recorded(kill_and_wait_new_pid(mgr, "svc")["pid"])
    info = kill_and_wait_new_pid(mgr, "svc")
    recorded(info["pid"])
    assert info["restarts"] == 2
    pids = [int(x) for x in runs.read_text().split()]
    assert len(pids) == 3
    assert [p for p in pids if pid_alive(p)] == [info["pid"]]


def test_explicit_start_cuts_the_restart_delay_short(tree, svmgr, tmp_path):
    runs = tmp_path / "runs"
    tree.simple(
        "svc",
        f"echo run >> {runs}; [ $(wc -l < {runs}) -ge 2 ] || exit 1; exec sleep 1000",
        extra=restart("permanent", delay="1h"),  # waiting it out would hang the test
    )
    mgr = svmgr(args=BARE)
    mgr.wait_state("svc", "restarting")
    reply = mgr.request("StartService", {"name": "svc"}, timeout=30)["service"]
    assert reply["state"] == "running"
    mgr.wait_for(lambda: runs.read_text().count("run") == 2, what="second run")
    time.sleep(0.2)
    assert mgr.status("svc")["pid"] == reply["pid"]


def test_start_while_stopping_starts_again_once_down(tree, svmgr, tmp_path):
    import threading

    rec = tmp_path / "rec"
    tree.simple(
        "svc", f"trap 'sleep 0.4; exit 0' TERM; {stamp(rec, 'up')}; while :; do sleep 0.05; done"
    )
    mgr = svmgr(args=BARE)
    old = mgr.wait_state("svc", "running")["pid"]
    wait_stamps(rec, ["up"])
    stop_outcome: list[BaseException | dict] = []

    def stop() -> None:
        try:
            stop_outcome.append(mgr.request("StopService", {"name": "svc"}))
        except BaseException as e:
            stop_outcome.append(e)

    stopper = threading.Thread(target=stop)
    stopper.start()
    try:
        mgr.wait_state("svc", "stopping")
        reply = mgr.request("StartService", {"name": "svc"})["service"]
    finally:
        stopper.join(10)
    # As with systemctl: the start replaces the pending stop job, whose
    # caller learns that it was canceled and by what.
    [outcome] = stop_outcome
    assert isinstance(outcome, RemoteError), outcome
    assert "canceled: replaced by a start job" in str(outcome)
    assert reply["state"] == "running"
    assert reply["pid"] != old
    assert not pid_alive(old)
    time.sleep(0.2)
    assert mgr.status("svc")["pid"] == reply["pid"]


@pytest.mark.parametrize("delay", ["1h", "1s"])
def test_explicit_stop_of_a_member_while_its_group_restarts(tree, svmgr, tmp_path, delay):
    # With 1h: the reply does not wait for the group's restart delay (it
    # would hang the test). With 1s: the group comes back without it.
    rec = tmp_path / "rec"
    tree.supervisor("grp", '[supervisor]\nname = "grp"\nstrategy = "one-for-all"\n')
    tree.simple("crashy", supervisor="grp", extra=restart("permanent", delay=delay))
    tree.simple(
        "slow",
        f"trap 'sleep 0.4; exit 0' TERM; {stamp(rec, 'up')}; while :; do sleep 0.05; done",
        supervisor="grp",
        extra=restart("permanent", delay=delay),
    )
    mgr = svmgr(args=BARE)
    crashy = mgr.wait_state("crashy", "running")["pid"]
    mgr.wait_state("slow", "running")
    wait_stamps(rec, ["up"])
    os.kill(crashy, signal.SIGKILL)
    mgr.wait_state("slow", "stopping")
    reply = mgr.request("StopService", {"name": "slow"}, timeout=30)["service"]
    # The reply comes when it is down, not after the group's restart delay.
    assert reply["state"] == "stopped"
    if delay == "1h":
        assert mgr.status("crashy")["state"] != "running"
        return
    # The rest of the group restarts without it.
    info = mgr.wait_state("crashy", "running")
    assert info["pid"] != crashy
    time.sleep(0.2)
    assert mgr.status("slow")["state"] == "stopped"


def test_explicit_restart_during_a_group_restart_does_not_stall_it(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.supervisor("grp", '[supervisor]\nname = "grp"\nstrategy = "one-for-all"\n')
    tree.simple("crashy", supervisor="grp", extra=restart("permanent", delay="300ms"))
    tree.simple(
        "slow",
        f"trap 'sleep 0.3; exit 0' TERM; {stamp(rec, 'up')}; while :; do sleep 0.05; done",
        supervisor="grp",
        extra=restart("permanent", delay="300ms"),
    )
    mgr = svmgr(args=BARE)
    crashy = mgr.wait_state("crashy", "running")["pid"]
    slow = mgr.wait_state("slow", "running")["pid"]
    wait_stamps(rec, ["up"])
    os.kill(crashy, signal.SIGKILL)
    mgr.wait_state("slow", "stopping")
    reply = mgr.request("RestartService", {"name": "slow"})["service"]
    assert reply["state"] == "running" and reply["pid"] != slow
    info = mgr.wait_state("crashy", "running", timeout=5)
    assert info["pid"] != crashy
