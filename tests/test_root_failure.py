"""The root supervisor's configurable system action (``on-failure``)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from dynamod.config.loader import load_config
from dynamod.testing import ConfigTree, InitContainer


def crashing_tree(tree: ConfigTree, action: str | None) -> None:
    line = f'on-failure = "{action}"\n' if action else ""
    tree.supervisor("root", f"""
        [supervisor]
        name = "root"
        escalate = true
        {line}
        [restart]
        max-restarts = 1
        max-restart-window = "60s"
        """)
    tree.simple("crasher", "exit 1", extra='[restart]\ndelay = "50ms"\n')
    tree.simple("bystander")


def test_on_failure_is_validated(tree: ConfigTree) -> None:
    crashing_tree(tree, "explode")
    tree.supervisor("child", '[supervisor]\nname = "child"\non-failure = "reboot"\n')
    errors = [str(d) for d in load_config(tree.root).errors]
    assert any("supervisors/root.toml: supervisor.on-failure" in e and "explode" in e for e in errors), errors
    assert any("supervisors/child.toml: supervisor.on-failure: only the root supervisor" in e for e in errors), errors


def test_default_unprivileged_action_stops_everything_and_exits_3(tree: ConfigTree, svmgr) -> None:
    crashing_tree(tree, None)
    mgr = svmgr(args=["--no-plugins"])
    assert mgr.wait_exit(30) == 3
    assert "system action: stopping everything and exiting (emergency, unprivileged mode)" in mgr.log()


def test_action_none_keeps_the_manager_running(tree: ConfigTree, svmgr) -> None:
    crashing_tree(tree, "none")
    mgr = svmgr(args=["--no-plugins"])
    mgr.wait_for(lambda: "system action: none (configured)" in mgr.log(), what="the system action")
    assert mgr.wait_state("crasher", "failed")["reason"]
    assert mgr.status("bystander")["state"] == "failed"  # stopped with its supervisor
    time.sleep(0.3)
    assert mgr.proc.poll() is None  # still serving
    mgr.request("StartService", {"name": "bystander"})
    assert mgr.status("bystander")["state"] == "running"


def test_action_poweroff_unprivileged_is_an_ordered_exit_0(tree: ConfigTree, svmgr) -> None:
    crashing_tree(tree, "poweroff")
    mgr = svmgr(args=["--no-plugins"])
    assert mgr.wait_exit(30) == 0
    assert "system action: poweroff" in mgr.log()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_action_reboot_under_init_reboots_the_container(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path / "etc")
    crashing_tree(tree, "reboot")
    env = {"DYNAMOD_HEARTBEAT_INTERVAL": "0.3"}
    with InitContainer(tree.root, tmp_path / "w", env=env) as c:
        assert c.wait(60) == 133
        log = c.log()
    assert "system action: reboot" in log
    assert "shutdown requested: reboot" in log
