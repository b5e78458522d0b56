"""Readiness type ``fd`` against a real dynamod-svmgr: real pipes, the fd
placed by the exec shim, services written in sh and Python."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dynamod.testing import ConfigTree, Svmgr

TEMPORARY = '[restart]\npolicy = "temporary"\n'

# Lists the descriptors it was started with, then reports readiness on
# $DYNAMOD_READY_FD.
FD_REPORTER = r"""
import os, time
fds = []
for name in os.listdir("/proc/self/fd"):
    try:
        os.fstat(int(name))
        fds.append(int(name))
    except OSError:
        pass  # the descriptor listdir itself used
print("fds", sorted(fds), "env", os.environ["DYNAMOD_READY_FD"], flush=True)
time.sleep(0.3)
os.write(int(os.environ["DYNAMOD_READY_FD"]), b"ready\n")
time.sleep(1000)
"""


def fd_service(
    tree: ConfigTree, name: str, script: str, options: str = "", extra: str = ""
) -> None:
    tree.simple(name, script, extra=f'[readiness]\ntype = "fd"\n{options}\n' + TEMPORARY + extra)


def logs(mgr: Svmgr, name: str) -> list[str]:
    return [text for _ts, text in mgr.request("GetLogs", {"name": name})["lines"]]


def test_ready_on_a_line_at_fd_3(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    fd_service(tree, "s6ish", 'sleep 0.3; echo "fd=$DYNAMOD_READY_FD"; echo >&3; exec sleep 1000')
    mgr = svmgr()
    info = mgr.wait_state("s6ish", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    assert "fd=3" in logs(mgr, "s6ish")
    # The shim exec'd the service: the spawned PID is the service itself.
    assert Path(f"/proc/{info['pid']}/comm").read_text().strip() == "sleep"


@pytest.mark.parametrize("fd", [3, 7, 12, 200])
def test_exactly_that_fd_and_nothing_else(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], tmp_path: Path, fd: int
) -> None:
    script = tmp_path / "reporter.py"
    script.write_text(FD_REPORTER)
    fd_service(tree, "py", f"exec {sys.executable} {script}", f"fd = {fd}")
    mgr = svmgr()
    info = mgr.wait_state("py", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    assert f"fds [0, 1, 2, {fd}] env {fd}" in logs(mgr, "py")


def test_partial_line_then_close_counts(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    fd_service(tree, "dinitish", "printf ok >&3; exec 3>&-; exec sleep 1000")
    mgr = svmgr()
    assert mgr.wait_state("dinitish", ["running", "failed"])["state"] == "running"


def test_closed_before_writing(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    fd_service(tree, "closes", "sleep 0.2; exec 3>&-; exec sleep 1000")
    mgr = svmgr()
    info = mgr.wait_state("closes", "failed")
    assert info["reason"] == "readiness fd 3 was closed before the service wrote a line"


def test_timeout_without_a_line(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    fd_service(tree, "mute", "exec sleep 1000", 'timeout = "1s"')
    mgr = svmgr()
    info = mgr.wait_state("mute", "failed")
    assert info["reason"] == "readiness timeout after 1s"


def test_exit_before_ready(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    fd_service(tree, "quits", "sleep 0.2; exit 4")
    mgr = svmgr()
    info = mgr.wait_state("quits", "failed")
    # The exit and the pipe's EOF arrive together; either explains it.
    assert info["reason"] in (
        "exited 4",
        "readiness fd 3 was closed before the service wrote a line",
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runs a service as nobody)")
def test_service_running_as_another_user(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    # The shim runs before the privilege drop (setpriv), which keeps the fd.
    fd_service(
        tree,
        "unpriv",
        'echo "user=$(id -un)"; echo ready >&3; exec sleep 1000',
        extra='[service.user]\nuser = "nobody"\n',
    )
    mgr = svmgr()
    info = mgr.wait_state("unpriv", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    assert "user=nobody" in logs(mgr, "unpriv")
