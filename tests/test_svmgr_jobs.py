"""Jobs: every start, stop and restart ends with a result and says what it
did to other services; conflicting jobs replace or fail; and the defaults
cannot take the system down."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from dynamod.ipc.client import RemoteError
from dynamod.ipc.framing import FrameDecoder, encode_frame
from dynamod.testing import ConfigTree, wait_until

BARE = ["--no-plugins"]
FOREVER = "trap 'exit 0' TERM; while :; do sleep 0.05; done"
FAST = '[restart]\ndelay = "50ms"\n'


def deps(**kw: list[str]) -> str:
    return "[dependencies]\n" + "".join(
        f"{k} = [" + ", ".join(f'"{d}"' for d in v) + "]\n" for k, v in kw.items())


def test_a_start_that_dies_at_once_fails_its_job(tree: ConfigTree, svmgr) -> None:
    tree.simple("flaky", "exit 3", enabled=False, extra='[restart]\npolicy = "temporary"\n')
    mgr = svmgr(args=BARE)
    with pytest.raises(RemoteError) as exc:
        mgr.request("StartService", {"name": "flaky"})
    assert exc.value.code == "failed"
    assert "flaky failed" in exc.value.message and "exited 3" in exc.value.message
    assert mgr.status("flaky")["state"] == "failed"


def test_a_start_reports_the_dependencies_it_started(tree: ConfigTree, svmgr) -> None:
    tree.simple("db", FOREVER, enabled=False)
    tree.simple("cache", FOREVER, enabled=False, extra=deps(requires=["db"]))
    tree.simple("web", FOREVER, enabled=False, extra=deps(requires=["cache"], wants=["db"]))
    mgr = svmgr(args=BARE)
    body = mgr.request("StartService", {"name": "web"})
    job = body["job"]
    assert job["result"] == "done" and job["unit"] == "web" and job["type"] == "start"
    effects = {e["name"]: e["state"] for e in job["effects"]}
    assert effects == {"db": "running", "cache": "running"}


def test_a_restart_reports_the_dependents_it_bounced(tree: ConfigTree, svmgr) -> None:
    tree.service("setup", '[service]\nname = "setup"\ntype = "oneshot"\nexec = ["/bin/true"]\n')
    for n in ("a", "b", "c", "d"):
        tree.simple(n, FOREVER, extra=deps(requires=["setup"]))
    mgr = svmgr(args=BARE)
    for n in ("a", "b", "c", "d"):
        mgr.wait_state(n, "running")
    job = mgr.request("RestartService", {"name": "setup"})["job"]
    assert job["result"] == "done"
    bounced = {e["name"] for e in job["effects"]}
    assert bounced == {"a", "b", "c", "d"}


def test_a_stop_reports_the_dependents_it_stopped_and_blocked(tree: ConfigTree, svmgr) -> None:
    tree.simple("database", FOREVER)
    for n in ("cache", "queue", "webapp"):
        tree.simple(n, FOREVER, extra=deps(requires=["database"]))
    mgr = svmgr(args=BARE)
    for n in ("cache", "queue", "webapp"):
        mgr.wait_state(n, "running")
    job = mgr.request("StopService", {"name": "database"})["job"]
    assert job["result"] == "done"
    effects = {e["name"]: (e["state"], e["reason"]) for e in job["effects"]}
    assert set(effects) == {"cache", "queue", "webapp"}
    for n in ("cache", "queue", "webapp"):
        assert effects[n] == ("blocked", "requires database, which was stopped"), effects


def test_a_blocked_start_ends_with_result_dependency(tree: ConfigTree, svmgr) -> None:
    tree.service("base", '[service]\nname = "base"\ntype = "oneshot"\nexec = ["/bin/false"]\n'
                 '[restart]\npolicy = "temporary"\n')
    tree.simple("top", FOREVER, enabled=False, extra=deps(requires=["base"]))
    mgr = svmgr(args=BARE)
    mgr.wait_state("base", "failed")
    with pytest.raises(RemoteError) as exc:
        mgr.request("StartService", {"name": "top"})
    assert "top is blocked" in exc.value.message
    # (starting top retries base, which fails again)
    assert "requires base, which failed" in exc.value.message


def test_job_modes_replace_and_fail(tree: ConfigTree, svmgr) -> None:
    # A service slow to stop keeps its stop job pending.
    tree.simple("slow", "trap 'sleep 1; exit 0' TERM; while :; do sleep 0.05; done")
    mgr = svmgr(args=BARE)
    mgr.wait_state("slow", "running")
    queued = mgr.request("StopService", {"name": "slow", "no_block": True})["job"]
    assert queued["result"] is None
    jobs = mgr.request("ListJobs")["jobs"]
    assert [(j["id"], j["unit"], j["type"]) for j in jobs] == [(queued["id"], "slow", "stop")]
    with pytest.raises(RemoteError) as exc:
        mgr.request("StartService", {"name": "slow", "mode": "fail"})
    assert "has a stop job pending" in exc.value.message
    # The same request again is the same job.
    again = mgr.request("StopService", {"name": "slow", "no_block": True})["job"]
    assert again["id"] == queued["id"]
    # replace: the stop job ends canceled, the start job takes over and
    # starts it again once it is down.
    with mgr.client() as c:
        c.request("Subscribe", {"jobs": True})
        body = c.request("StartService", {"name": "slow"}).body
        assert body["job"]["result"] == "done"
        seen = []
        for ev in c.events(timeout=5):
            if ev.type == "JobRemoved":
                seen.append((ev.body["id"], ev.body["result"]))
            if len(seen) >= 2:
                break
    assert (queued["id"], "canceled") in seen
    assert (body["job"]["id"], "done") in seen
    assert mgr.status("slow")["state"] == "running"
    assert mgr.request("ListJobs")["jobs"] == []


def test_try_restart_of_a_stopped_service_is_skipped(tree: ConfigTree, svmgr) -> None:
    tree.simple("idle", FOREVER, enabled=False)
    mgr = svmgr(args=BARE)
    job = mgr.request("TryRestartService", {"name": "idle"})["job"]
    assert job["result"] == "skipped"
    assert mgr.status("idle")["state"] == "stopped"


def test_a_bad_job_mode_is_refused_by_name(tree: ConfigTree, svmgr) -> None:
    tree.simple("x", FOREVER)
    mgr = svmgr(args=BARE)
    # (the client library refuses to send it: a raw frame, as another client might)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(mgr.socket)
        sock.sendall(encode_frame({"id": 1, "kind": "request", "type": "StartService",
                                   "body": {"name": "x", "mode": "isolate"}}))
        dec = FrameDecoder()
        frames: list = []
        while not frames:
            frames = dec.feed(sock.recv(65536))
    reply = frames[0]
    assert reply["type"] == "Error" and reply["body"]["code"] == "bad-request"
    assert "'mode'" in reply["body"]["message"] and "isolate" in reply["body"]["message"]


# ---------------------------------------------------------------- defaults


def test_one_broken_service_and_an_unrelated_crash_loop_leave_the_system_up(tree: ConfigTree, svmgr) -> None:
    """With the defaults (root: 5 restarts in 60 s, no escalation) a service
    with a missing binary and a failing oneshot fail alone; an unrelated
    service that crashes again and again is restarted each time within its
    budget; the root supervisor never fails."""
    tree.service("nobinary", '[service]\nname = "nobinary"\nexec = ["/nonexistent/daemon"]\n' + FAST)
    tree.service("badsetup", '[service]\nname = "badsetup"\ntype = "oneshot"\nexec = ["/bin/false"]\n')
    tree.simple("victim", FOREVER, extra='[restart]\ndelay = "50ms"\n')
    tree.simple("bystander", FOREVER)
    mgr = svmgr(args=BARE)
    assert "spawn failed" in mgr.wait_state("nobinary", "failed", timeout=30)["reason"]
    setup = mgr.wait_state("badsetup", "failed")
    assert setup["restarts"] == 0  # a oneshot is not retried unless asked
    bystander = mgr.wait_state("bystander", "running")["pid"]
    for i in range(4):
        pid = mgr.wait_for(lambda: (s := mgr.status("victim"))["state"] == "running" and s["pid"],
                           what="victim running")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda p=pid: mgr.status("victim")["pid"] not in (p, None), timeout=10,
                   what=f"victim restarted ({i + 1})")
    assert mgr.status("victim")["restarts"] == 4
    assert mgr.status("bystander")["pid"] == bystander
    assert "ROOT SUPERVISOR FAILED" not in mgr.log()
    assert mgr.request("TreeStatus")["root"]["state"] == "running"


def test_a_oneshot_asking_for_restarts_gets_them(tree: ConfigTree, svmgr) -> None:
    tree.service("retry", '[service]\nname = "retry"\ntype = "oneshot"\nexec = ["/bin/false"]\n'
                 '[restart]\npolicy = "transient"\ndelay = "50ms"\nmax-restarts = 2\n')
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("retry", "failed", timeout=20)
    assert info["restarts"] == 2
    assert "gave up after 2 restarts" in info["reason"]


def test_a_dependency_whose_file_was_refused_blocks_what_requires_it(tree: ConfigTree, svmgr) -> None:
    tree.service("dep", '[service]\nname = "dep"\nexec = ["/bin/sleep", "1000"]\nbogus-key = 1\n')
    tree.simple("top", FOREVER, extra=deps(requires=["dep"]))
    mgr = svmgr(args=BARE)
    dep = mgr.wait_state("dep", "failed")
    assert "bogus-key" in dep["reason"] and dep["load_error"]
    top = mgr.wait_state("top", "blocked")
    assert top["reason"] == "requires dep, which failed to load"
    assert top["requires"] == ["dep"]
    assert {"dep", "top"} <= {s["name"] for s in mgr.request("ListServices")["services"]}
    # Fixed and reloaded: both start.
    tree.service("dep", '[service]\nname = "dep"\nexec = ["/bin/sleep", "1000"]\n')
    mgr.request("Reload")
    mgr.wait_state("dep", "running")
    mgr.wait_state("top", "running")
