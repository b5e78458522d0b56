"""svmgr SIGKILLed at random moments under dynamod-init: afterwards exactly
one copy of every service that should run, none lost, no oneshot run twice.

Each round boots a fresh container with 200 services (150 long-running ones
in dependency chains, 50 run-once oneshots that record each run), then kills
svmgr at a random moment of: the boot, a restart of a service with many
dependents, and a reload that changes 20 services. After each kill the next
svmgr must settle with one process per long-running service and every
oneshot run exactly once.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from dynamod.ipc.client import ProtocolError, RemoteError
from dynamod.testing import ConfigTree, InitContainer, wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None,
    reason="needs root, unshare and nsenter (CI runs it as root)",
)

ENV = {
    "DYNAMOD_HEARTBEAT_INTERVAL": "2",
    "DYNAMOD_BACKOFF_MIN": "0.1",
    "DYNAMOD_BACKOFF_MAX": "0.2",
    "DYNAMOD_STABLE_AFTER": "600",
}
SIMPLE = 150
ONESHOTS = 50


def build(tree: ConfigTree, runs: Path, version: int = 1) -> None:
    for i in range(ONESHOTS):
        tree.service(f"o{i:02d}", f"""
            [service]
            name = "o{i:02d}"
            type = "oneshot"
            exec = ["/bin/sh", "-c", "echo o{i:02d} >> {runs}; sleep 0.0{i % 10}"]
            """)
    for i in range(SIMPLE):
        deps = []
        if i % 10:
            deps.append(f"s{i - 1:03d}")  # chains of ten
        deps.append(f"o{i % ONESHOTS:02d}")
        version_env = f'environment = {{ V = "{version}" }}\n' if i % 7 == 0 else ""
        tree.service(f"s{i:03d}", f"""
            [service]
            name = "s{i:03d}"
            exec = ["/bin/sleep", "100000"]
            {version_env}
            [dependencies]
            requires = {deps!r}
            """.replace("'", '"'))


def settled(c: InitContainer) -> dict[str, dict] | None:
    try:
        infos = {}
        offset: int | None = 0
        while offset is not None:
            page = c.request("ListServices", {"offset": offset})
            infos.update({s["name"]: s for s in page["services"]})
            offset = page.get("next")
    except (OSError, RemoteError, ProtocolError):
        return None
    if len(infos) != SIMPLE + ONESHOTS:
        return None
    done = all(
        (s["state"] == "running") if n.startswith("s") else (s["state"] == "exited")
        for n, s in infos.items()
    )
    return infos if done else None


def check_one_copy(c: InitContainer, runs: Path, where: str) -> None:
    infos = wait_until(lambda: settled(c), timeout=90, what=f"every service up again after {where}",
                       context=lambda: c.log()[-6000:])
    procs = c.service_processes()
    dupes = {n: p for n, p in procs.items() if n.startswith("s") and len(p) != 1}
    missing = [n for n in infos if n.startswith("s") and n not in procs]
    assert not dupes, f"{where}: more than one copy: {dupes}"
    if missing:
        detail = []
        by_ns = {_ns_pid(p): p for p in c.processes()}
        for n in missing:
            info = c.request("ServiceStatus", {"name": n})["service"]
            host = by_ns.get(info["pid"])
            what = "no such process"
            if host is not None:
                with open(f"/proc/{host}/cmdline", "rb") as f:
                    what = f"pid {host}: {f.read()!r}"
                with open(f"/proc/{host}/environ", "rb") as f:
                    what += f" env {f.read()[:300]!r}"
            detail.append(f"{n}: svmgr says {info['state']} pid {info['pid']}: {what}")
        log = [line for line in c.log().splitlines()
               if any(m in line for m in missing) or "svmgr started" in line]
        raise AssertionError(f"{where}: lost: {detail}\n" + "\n".join(log[-40:]))
    lines = runs.read_text().split()
    twice = sorted({x for x in lines if lines.count(x) > 1})
    if twice:
        log = [line for line in c.log().splitlines()
               if any(t in line for t in twice) or "svmgr started" in line or "adopted" in line]
        raise AssertionError(f"{where}: oneshots ran twice: {twice}\n" + "\n".join(log[-80:]))
    assert len(set(lines)) == ONESHOTS, f"{where}: oneshots that never ran"
    # The main PIDs svmgr reports are the processes that run.
    for n, pids in procs.items():
        if n.startswith("s"):
            assert infos[n]["pid"] == _ns_pid(pids[0]), (where, n, infos[n]["pid"], pids)


def kill_svmgr(c: InitContainer) -> None:
    pid = c.svmgr_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: (p := c.svmgr_pid()) is not None and p != pid, timeout=20, what="a new svmgr")


def test_random_svmgr_kills_leave_exactly_one_copy(tmp_path: Path) -> None:
    rng = random.Random(20261203)
    rounds = 10
    for r in range(rounds):
        work = tmp_path / f"r{r}"
        tree = ConfigTree(work / "etc")
        runs = work / "runs"
        runs.touch()
        build(tree, runs)
        with InitContainer(tree.root, work / "w", env=ENV) as c:
            # 1. During the boot.
            wait_until(lambda: c.svmgr_pid() is not None, timeout=20, what="svmgr")
            time.sleep(rng.uniform(0.05, 0.6))
            kill_svmgr(c)
            check_one_copy(c, runs, f"round {r}: a kill during the boot")
            # 2. During a restart of a service with nine dependents.
            head = f"s{rng.randrange(0, SIMPLE, 10):03d}"
            t = threading.Thread(target=_quiet, args=(c, "RestartService", {"name": head}))
            t.start()
            time.sleep(rng.uniform(0.0, 0.15))
            kill_svmgr(c)
            t.join(30)
            check_one_copy(c, runs, f"round {r}: a kill during a restart of {head}")
            # 3. During a reload that changes 20 services.
            build(tree, runs, version=r + 2)
            t = threading.Thread(target=_quiet, args=(c, "Reload", {}))
            t.start()
            time.sleep(rng.uniform(0.0, 0.3))
            kill_svmgr(c)
            t.join(30)
            check_one_copy(c, runs, f"round {r}: a kill during a reload")
            c.signal(signal.SIGTERM)
            assert c.wait(60) == 0
        # Nothing of the container outlives it.
        assert not [p for p in os.listdir("/proc") if p.isdigit() and _has(p, str(work))]


def _quiet(c: InitContainer, type_: str, body: dict) -> None:
    try:
        c.request(type_, body)
    except (OSError, RemoteError, ProtocolError, EOFError):
        pass  # svmgr was killed under it: that is the point


def _ns_pid(host_pid: int) -> int | None:
    """The PID a process has inside its (innermost) PID namespace."""
    try:
        with open(f"/proc/{host_pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except OSError:
        pass
    return None


def _has(pid: str, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False
