"""Readiness type ``exec`` against a real dynamod-svmgr: the check command
is a real process spawned through the host and reaped by its reaper."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from dynamod.testing import ConfigTree, Svmgr

TEMPORARY = '[restart]\npolicy = "temporary"\n'


def logs(mgr: Svmgr, name: str) -> list[str]:
    return [text for _ts, text in mgr.request("GetLogs", {"name": name})["lines"]]


def exec_service(tree: ConfigTree, name: str, script: str, check: str, options: str = "") -> None:
    tree.simple(
        name,
        script,
        extra=(
            f'[readiness]\ntype = "exec"\ncheck-exec = ["/bin/sh", "-c", {json.dumps(check)}]\n'
            f"{options}\n" + TEMPORARY
        ),
    )


def running(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return out.stdout.split()


def test_ready_when_the_check_passes(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    exec_service(
        tree,
        "app",
        f"sleep 0.5; touch {flag}; exec sleep 1000",
        f"echo check sees MAINPID=$MAINPID GREETING=$GREETING; test -e {flag}",
        'interval = "100ms"',
    )
    svc = tree.root / "services" / "app.toml"
    svc.write_text(
        svc.read_text().replace("[readiness]", 'environment = { GREETING = "hi" }\n[readiness]')
    )
    mgr = svmgr()
    info = mgr.wait_state("app", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    lines = logs(mgr, "app")
    # The check's output is in the service's log, with the service's
    # environment and MAINPID; failed attempts are summarised once.
    assert f"check sees MAINPID={info['main_pid']} GREETING=hi" in lines
    assert lines.count("[dynamod] exec: check exited 1; retrying every 100ms") == 1


def test_hanging_check_is_killed(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    marker = f"sleep 987.{os.getpid()}"
    exec_service(
        tree,
        "app",
        "exec sleep 1000",
        f"exec {marker}",
        'check-timeout = "200ms"\ninterval = "100ms"\ntimeout = "1500ms"',
    )
    mgr = svmgr()
    info = mgr.wait_state("app", "failed")
    assert info["reason"] == "readiness timeout after 1.5s"
    assert (
        "[dynamod] exec: check did not finish within 200ms (killed); retrying every 100ms"
        in logs(mgr, "app")
    )
    mgr.wait_for(lambda: not running(marker), what="no check left running")


def test_check_that_cannot_run(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    tree.simple(
        "app",
        "exec sleep 1000",
        extra='[readiness]\ntype = "exec"\ncheck-exec = ["/nonexistent/check"]\n' + TEMPORARY,
    )
    mgr = svmgr()
    # At once: waiting out the 30 s readiness timeout would overrun
    # wait_state's 15 s and say "readiness timeout" instead.
    info = mgr.wait_state("app", "failed")
    assert info["reason"] == "check-exec cannot run: executable /nonexistent/check not found"


def test_exit_before_ready_kills_the_check(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    marker = f"sleep 876.{os.getpid()}"
    exec_service(tree, "app", "sleep 0.5; exit 2", f"exec {marker}")
    mgr = svmgr()
    info = mgr.wait_state("app", "failed")
    assert info["reason"] == "exited 2"
    mgr.wait_for(lambda: not running(marker), what="the check killed with the wait")


def test_loop_stays_responsive_during_a_check(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], tmp_path: Path
) -> None:
    # The check runs until the test opens the gate: every answer while it is
    # shut came while a check was running (a manager blocked on the check
    # would answer none, and the requests would time out).
    gate = tmp_path / f"gate.{os.getpid()}"
    exec_service(
        tree, "app", "exec sleep 1000", f"while [ ! -e {gate} ]; do sleep 0.05; done",
        'check-timeout = "1h"\ntimeout = "1h"',
    )
    mgr = svmgr()
    mgr.wait_state("app", "waiting-ready")
    mgr.wait_for(lambda: running(str(gate)), what="the check running")
    for _ in range(5):
        assert mgr.request("ServiceStatus", {"name": "app"}, timeout=30)["service"]["state"] == "waiting-ready"
    gate.touch()
    assert mgr.wait_state("app", ["running", "failed"])["state"] == "running"
