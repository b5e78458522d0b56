"""Control-protocol semantics as seen by a client: replies come when the
action is done (or failed, with the reason), non-root peers may only read,
Subscribe streams state changes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from dynamod.ipc.client import Client, RemoteError
from dynamod.testing import ConfigTree, Svmgr, pid_alive, stamp, wait_stamps

BARE = ["--no-plugins"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")

CLIENT = r"""
import json, sys
from dynamod.ipc.client import Client, RemoteError
requests = json.loads(sys.argv[2])
out = []
with Client(sys.argv[1], timeout=30) as c:
    for type_, body in requests:
        try:
            reply = c.request(type_, body)
            out.append(["ok", reply.type])
        except RemoteError as e:
            out.append([e.code, e.message])
print(json.dumps(out))
"""


def run_client_as_nobody(socket_path: str, requests: list) -> list:
    proc = subprocess.run(
        [*NOBODY, sys.executable, "-c", CLIENT, socket_path, json.dumps(requests)],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def public_dir():
    """A temporary directory every user can traverse (pytest's tmp_path is
    private to root)."""
    d = tempfile.mkdtemp(prefix="dynamod-test-")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_start_replies_when_the_service_is_ready(tree, svmgr):
    tree.simple("setup", "sleep 0.5", type="oneshot", enabled=False)
    mgr = svmgr(args=BARE)
    t0 = time.monotonic()
    reply = mgr.request("StartService", {"name": "setup"})
    assert time.monotonic() - t0 >= 0.45
    assert reply["service"]["state"] == "exited"


def test_start_failure_is_an_error_with_the_reason(tree, svmgr):
    tree.simple(
        "bad",
        "sleep 0.2; exit 3",
        type="oneshot",
        enabled=False,
        extra='[restart]\npolicy = "temporary"\n',
    )
    tree.simple("needs-bad", enabled=False, extra='[dependencies]\nrequires = ["bad"]\n')
    mgr = svmgr(args=BARE)
    with pytest.raises(RemoteError) as exc:
        mgr.request("StartService", {"name": "bad"})
    assert exc.value.code == "failed"
    assert "exited 3" in exc.value.message
    with pytest.raises(RemoteError) as exc:
        mgr.request("StartService", {"name": "needs-bad"})
    assert exc.value.code == "failed"
    assert "requires bad, which failed" in exc.value.message


def test_start_timeout_is_reported(tree, svmgr):
    tree.simple(
        "slow",
        "sleep 5",
        type="oneshot",
        enabled=False,
        extra='[readiness]\ntimeout = "300ms"\n[restart]\npolicy = "temporary"\n',
    )
    mgr = svmgr(args=BARE)
    with pytest.raises(RemoteError) as exc:
        mgr.request("StartService", {"name": "slow"})
    assert "start timeout after 300ms" in exc.value.message


def test_stop_replies_when_the_service_is_down(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple(
        "slow", f"trap 'sleep 0.4; exit 0' TERM; {stamp(rec, 'up')}; while :; do sleep 0.05; done"
    )
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("slow", "running")["pid"]
    wait_stamps(rec, ["up"])
    t0 = time.monotonic()
    reply = mgr.request("StopService", {"name": "slow"})
    assert time.monotonic() - t0 >= 0.35
    assert reply["service"]["state"] == "stopped"
    assert not pid_alive(pid)
    # Stopping a stopped service is fine and immediate.
    assert mgr.request("StopService", {"name": "slow"})["service"]["state"] == "stopped"


def test_restart_replies_with_the_new_instance(tree, svmgr):
    tree.simple("web")
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("web", "running")["pid"]
    reply = mgr.request("RestartService", {"name": "web"})["service"]
    assert reply["state"] == "running"
    assert reply["pid"] != pid and pid_alive(reply["pid"])
    assert not pid_alive(pid)


def test_slow_request_does_not_hold_up_others(tree, svmgr, tmp_path):
    # setup runs until the test opens the gate: answers that come while it
    # is shut came while the start request was pending.
    gate = tmp_path / "gate"
    tree.simple("setup", f"while [ ! -e {gate} ]; do sleep 0.05; done", type="oneshot", enabled=False)
    mgr = svmgr(args=BARE)
    done = threading.Event()

    def slow():
        mgr.request("StartService", {"name": "setup"})
        done.set()

    t = threading.Thread(target=slow)
    t.start()
    try:
        mgr.wait_state("setup", "starting")
        assert "setup" in mgr.services()
        assert mgr.request("TreeStatus")["root"]
        assert not done.is_set()
    finally:
        gate.touch()
        t.join(30)
    assert done.is_set()
    assert mgr.status("setup")["state"] == "exited"


def test_unknown_service(tree, svmgr):
    tree.simple("web")
    mgr = svmgr(args=BARE)
    for type_ in ("ServiceStatus", "StartService", "StopService", "RestartService", "GetLogs"):
        with pytest.raises(RemoteError) as exc:
            mgr.request(type_, {"name": "nope"})
        assert exc.value.code == "unknown-service"


def test_subscribe_streams_state_changes(tree, svmgr):
    tree.simple("web", enabled=False)
    mgr = svmgr(args=BARE)
    with mgr.client() as c:
        assert c.request("Subscribe").type == "Ack"
        c.request("StartService", {"name": "web"})
        # The connection stays usable for requests while events arrive.
        pid = c.request("ServiceStatus", {"name": "web"}).body["service"]["pid"]
        c.request("StopService", {"name": "web"})
        events = []
        for ev in c.events(timeout=5):
            assert ev.type == "ServiceStateChanged"
            events.append(ev.body)
            if ev.body["new"] == "stopped":
                break
    assert [(e["old"], e["new"]) for e in events] == [
        ("stopped", "pending"),
        ("pending", "starting"),
        ("starting", "waiting-ready"),
        ("waiting-ready", "running"),
        ("running", "stopping"),
        ("stopping", "stopped"),
    ]
    assert all(e["name"] == "web" for e in events)
    assert events[3]["service"]["pid"] == pid
    times = [e["time"] for e in events]
    assert times == sorted(times)


@needs_root
def test_non_root_peer_may_only_read(tree, public_dir):
    tree.simple("web")
    run = public_dir / "run"
    with Svmgr(tree.root, run, args=BARE) as mgr:
        os.chmod(run, 0o755)
        pid = mgr.wait_state("web", "running")["pid"]
        results = run_client_as_nobody(
            mgr.socket,
            [
                ["Hello", {"version": 1, "client": "test"}],
                ["ListServices", {}],
                ["ServiceStatus", {"name": "web"}],
                ["TreeStatus", {}],
                ["GetLogs", {"name": "web"}],
                ["GetServiceByPid", {"pid": pid}],
                ["Subscribe", {}],
                ["StopService", {"name": "web"}],
                ["StartService", {"name": "web"}],
                ["RestartService", {"name": "web"}],
                ["Reload", {}],
                ["Shutdown", {"kind": "poweroff"}],
            ],
        )
        assert [r[0] for r in results[:7]] == ["ok"] * 7
        assert [r[0] for r in results[7:]] == ["permission-denied"] * 5
        assert "uid 65534" in results[7][1]
        # Nothing happened.
        info = mgr.status("web")
        assert info["state"] == "running" and info["pid"] == pid
        assert mgr.proc.poll() is None


@needs_root
def test_unprivileged_manager_trusts_its_own_user(public_dir):
    etc = public_dir / "etc"
    tree = ConfigTree(etc)
    tree.simple("web", enabled=False)
    run = public_dir / "run"
    run.mkdir()
    os.chown(run, 65534, 65534)
    log = open(public_dir / "svmgr.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            *NOBODY,
            sys.executable,
            "-m",
            "dynamod.svmgr.main",
            "--config-dir",
            str(etc),
            "--runtime-dir",
            str(run),
            *BARE,
        ],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        cwd="/",
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    log.close()
    sock = str(run / "control.sock")
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(sock):
            assert proc.poll() is None, (public_dir / "svmgr.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        results = run_client_as_nobody(
            sock, [["StartService", {"name": "web"}], ["StopService", {"name": "web"}]]
        )
        assert [r[0] for r in results] == ["ok", "ok"]
        # Root may do everything too.
        with Client(sock) as c:
            assert c.request("StartService", {"name": "web"}).body["service"]["state"] == "running"
            pid = c.request("ServiceStatus", {"name": "web"}).body["service"]["pid"]
        assert os.stat(f"/proc/{pid}").st_uid == 65534
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_second_svmgr_on_the_same_runtime_dir_refuses_to_start(tree, svmgr):
    import subprocess
    import sys

    tree.simple("solo")
    mgr = svmgr(args=["--no-plugins"])
    pid = mgr.wait_state("solo", "running")["pid"]
    r = subprocess.run(
        [sys.executable, "-m", "dynamod.svmgr.main", "--no-plugins", "--config-dir", str(tree.root),
         "--runtime-dir", str(mgr.runtime_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 1
    assert f"another dynamod-svmgr (pid {mgr.pid}) runs with runtime directory" in r.stderr
    # The first one and its service are untouched.
    assert mgr.status("solo")["pid"] == pid
