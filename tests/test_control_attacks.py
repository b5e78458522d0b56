"""An unprivileged local user attacks svmgr's control socket (issue 13):
root's `dynamodctl status` keeps answering and services keep being
restarted. svmgr runs with RLIMIT_NOFILE 1024 (soft and hard: it cannot
raise it), the limit the issue's attack exhausted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamod.testing import Attacker, ConfigTree, Svmgr, public_dir, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacker is uid 65534 (setpriv)")

CTL = str(Path(sys.executable).with_name("dynamodctl"))
NOFILE = 1024


@pytest.fixture
def mgr() -> Iterator[Svmgr]:
    with public_dir() as work:
        tree = ConfigTree(work / "etc")
        tree.supervisor("root", '[supervisor]\nname = "root"\nstrategy = "one-for-one"\n'
                        '[restart]\nmax-restarts = 10000\nmax-restart-window = "1s"\n')
        tree.simple("steady")
        tree.service("crasher", '[service]\nname = "crasher"\n'
                     'exec = ["/bin/sh", "-c", "sleep 0.1; exit 1"]\n'
                     '[restart]\ndelay = "50ms"\nmax-restarts = 10000\nmax-restart-window = "1s"\n')
        python = work / "python"
        python.write_text(f'#!/bin/sh\nexec prlimit --nofile={NOFILE}:{NOFILE} {sys.executable} "$@"\n')
        python.chmod(0o755)
        (work / "run").mkdir(mode=0o755)
        env = dict(os.environ, DYNAMOD_CONTROL_SLOW_TIMEOUT="3")
        with Svmgr(tree.root, work / "run", python=python, env=env) as m:
            m.wait_state("steady", "running")
            yield m


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def root_status_throughout(mgr: Svmgr, seconds: float) -> list[float]:
    """Run root's `dynamodctl status steady` again and again for
    ``seconds``; each must answer (10 s each is the hang guard, not a
    speed bound). Returns the wall times (ms) for the report."""
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        p = subprocess.run([CTL, "--socket", mgr.socket, "status", "steady"],
                           capture_output=True, text=True, timeout=10)
        times.append((time.perf_counter() - t0) * 1000)
        assert p.returncode == 0 and "running" in p.stdout, p.stderr
    return times


def restarts(mgr: Svmgr) -> int:
    return int(mgr.status("crasher")["restarts"])


@pytest.mark.parametrize("mode", ["hold", "slow"])
def test_an_unprivileged_user_cannot_starve_svmgr(mgr: Svmgr, mode: str) -> None:
    before = restarts(mgr)
    with Attacker(mgr.socket, 1100, mode) as atk:
        assert atk.opened == 1100
        assert atk.alive <= 64  # the rest were refused at once
        times = root_status_throughout(mgr, 4)
        assert fds(mgr.pid) < NOFILE - NOFILE // 4  # the reserve is untouched
        during = restarts(mgr)
        if mode == "slow":
            # The half-sent frames time out (3 s here); the attacker's
            # connections are gone even though it still holds its ends.
            wait_until(lambda: fds(mgr.pid) < 40, "the slow connections dropped", context=mgr.log)
    print(f"\n{mode}: root status over {len(times)} calls: max {max(times):.0f} ms, "
          f"median {sorted(times)[len(times) // 2]:.0f} ms")
    assert during - before >= 5  # the crasher kept being restarted meanwhile
    wait_until(lambda: restarts(mgr) > during, "a restart after the attack", context=mgr.log)
    log = mgr.log()
    assert "Too many open files" not in log
    assert "connection refused: uid 65534 has 64 connections" in log
    assert log.count("uid 65534") <= 8  # a summary, not 1,036 lines
