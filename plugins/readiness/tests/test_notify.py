"""Readiness type ``notify`` against a real dynamod-svmgr, driven by real
sd_notify clients: the systemd-notify 252 binary, libsystemd's sd_notify()
through ctypes, and the ``sdnotify`` package from PyPI."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dynamod.ipc.client import RemoteError
from dynamod.testing import ConfigTree, Svmgr

SYSTEMD_NOTIFY = shutil.which("systemd-notify")
needs_systemd_notify = pytest.mark.skipif(
    SYSTEMD_NOTIFY is None, reason="systemd-notify not installed"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runs a service as nobody)")

TEMPORARY = '[restart]\npolicy = "temporary"\n'
NOTIFY = '[readiness]\ntype = "notify"\n'

# A daemon speaking through the real libsystemd. It reports what
# sd_watchdog_enabled() makes of its environment, declares readiness, tests
# the barrier, then pings the watchdog (when enabled) until STOP exists.
LIBSYSTEMD_DAEMON = r"""
import ctypes, os, sys, time
lib = ctypes.CDLL("libsystemd.so.0")
usec = ctypes.c_uint64(0)
enabled = lib.sd_watchdog_enabled(0, ctypes.byref(usec))
print(f"watchdog-enabled {enabled} {usec.value} pid={os.environ.get('WATCHDOG_PID')}", flush=True)
print("sd_notify", lib.sd_notify(0, b"READY=1\nSTATUS=libsystemd here"), flush=True)
t = time.monotonic()
rc = lib.sd_notify_barrier(0, ctypes.c_uint64(5_000_000))
print(f"barrier {rc} {time.monotonic() - t:.2f}s", flush=True)
while not os.path.exists(sys.argv[1]):
    if enabled > 0:
        lib.sd_notify(0, b"WATCHDOG=1")
    time.sleep(0.1)
print("stopped pinging", flush=True)
time.sleep(1000)
"""

# The same daemon written with the sdnotify package (PyPI).
SDNOTIFY_DAEMON = r"""
import os, sys, time
import sdnotify
n = sdnotify.SystemdNotifier(debug=True)
n.notify("STATUS=warming up")
time.sleep(0.3)
n.notify("READY=1\nSTATUS=serving with sdnotify")
print("sent READY=1", flush=True)
while not os.path.exists(sys.argv[1]):
    if "WATCHDOG_USEC" in os.environ:
        n.notify("WATCHDOG=1")
    time.sleep(0.1)
print("stopped pinging", flush=True)
time.sleep(1000)
"""


def logs(mgr: Svmgr, name: str) -> list[str]:
    return [text for _ts, text in mgr.request("GetLogs", {"name": name})["lines"]]


def wait_logged(mgr: Svmgr, name: str, needle: str, timeout: float = 15.0) -> list[str]:
    return mgr.wait_for(
        lambda: (lines := logs(mgr, name)) and any(needle in x for x in lines) and lines,
        timeout,
        f"{needle!r} in the log of {name}",
    )


def python_service(
    tree: ConfigTree, tmp: Path, name: str, code: str, extra: str = "", **kw: object
) -> Path:
    script = tmp / f"{name}.py"
    script.write_text(code)
    stop = tmp / f"{name}.stop"
    tree.service(
        name,
        f'[service]\nname = "{name}"\nexec = ["{sys.executable}", "{script}", "{stop}"]\n'
        + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in kw.items())
        + extra,
    )
    return stop


# --------------------------------------------------------------- real clients


@needs_systemd_notify
def test_systemd_notify_ready_returns_at_once(
    tree: ConfigTree, svmgr: Callable[..., Svmgr]
) -> None:
    # systemd-notify --ready sends READY=1, then BARRIER=1 with a pipe and
    # waits for us to close it: kept open it would stall 5 s and exit 1.
    tree.simple(
        "web",
        "a=$(date +%s%N); systemd-notify --ready --status='Serving requests'; rc=$?; "
        'b=$(date +%s%N); echo "rc=$rc ms=$(( (b - a) / 1000000 ))"; exec sleep 1000',
        type="notify",
    )
    mgr = svmgr()
    info = mgr.wait_state("web", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    assert info["status_text"] == "Serving requests"
    line = next(x for x in wait_logged(mgr, "web", "rc=") if x.startswith("rc="))
    rc, ms = (int(part.split("=")[1]) for part in line.split())
    assert rc == 0 and ms < 2500, line
    # Run as root, systemd-notify sends its parent's PID: the service's shell.
    assert info["main_pid"] == info["pid"]


@needs_systemd_notify
def test_systemd_notify_status_updates(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    tree.simple(
        "job",
        "systemd-notify --status='phase 1'; sleep 0.3; systemd-notify --ready; sleep 0.3; "
        "systemd-notify --status='phase 2'; exec sleep 1000",
        type="notify",
    )
    mgr = svmgr()
    assert mgr.wait_state("job", ["running", "failed"])["state"] == "running"
    mgr.wait_for(lambda: mgr.status("job")["status_text"] == "phase 2", what="STATUS=phase 2")


def test_libsystemd_sd_notify(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], tmp_path: Path
) -> None:
    python_service(tree, tmp_path, "lib", LIBSYSTEMD_DAEMON, type="notify")
    mgr = svmgr()
    info = mgr.wait_state("lib", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    assert info["status_text"] == "libsystemd here"
    lines = wait_logged(mgr, "lib", "barrier")
    assert "sd_notify 1" in lines  # > 0: sent
    barrier = next(x for x in lines if x.startswith("barrier"))
    _, rc, _took = barrier.split()
    # Closed by the manager: a barrier left open fails with -ETIMEDOUT.
    assert int(rc) >= 0, barrier
    # No watchdog configured: libsystemd sees none.
    assert "watchdog-enabled 0 0 pid=None" in lines


def test_sdnotify_package(tree: ConfigTree, svmgr: Callable[..., Svmgr], tmp_path: Path) -> None:
    pytest.importorskip("sdnotify")
    python_service(tree, tmp_path, "py", SDNOTIFY_DAEMON, type="notify")
    mgr = svmgr()
    info = mgr.wait_state("py", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    assert info["status_text"] == "serving with sdnotify"


# ------------------------------------------------------------- failure cases


def test_timeout_without_ready(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    tree.simple(
        "mute", "exec sleep 1000", type="notify", extra='[readiness]\ntimeout = "1s"\n' + TEMPORARY
    )
    mgr = svmgr()
    info = mgr.wait_state("mute", "failed")
    assert info["reason"] == "readiness timeout after 1s"


def test_exit_before_ready(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    tree.simple("quits", "sleep 0.2; exit 3", type="notify", extra=TEMPORARY)
    mgr = svmgr()
    info = mgr.wait_state("quits", "failed")
    assert "exited 3" in info["reason"]


@needs_systemd_notify
def test_message_from_foreign_pid_is_dropped(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    tree.simple(
        "svc",
        f"while [ ! -e {go} ]; do sleep 0.05; done; systemd-notify --ready; exec sleep 1000",
        type="notify",
    )
    mgr = svmgr()
    mgr.wait_state("svc", "waiting-ready")
    address = mgr.status("svc")["extra"]["notify-socket"]
    # This test process is no process of the service: a hand-made datagram
    # and the real client, twice each; none of them may count.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for _ in range(2):
            s.sendto(b"READY=1\nSTATUS=forged", address)
    env = {**os.environ, "NOTIFY_SOCKET": address}
    for _ in range(2):
        # As root it sends its parent's PID: ours. It exits 1 when its
        # barrier times out: 0 says the manager closed it anyway, after
        # reading everything sent before it.
        done = subprocess.run([SYSTEMD_NOTIFY, "--ready"], env=env, timeout=10)
        assert done.returncode == 0
    mgr.wait_for(lambda: any("ignoring messages from" in x for x in logs(mgr, "svc")), what="the drop logged")
    info = mgr.status("svc")
    assert info["state"] == "waiting-ready" and info["status_text"] == ""
    dropped = [x for x in logs(mgr, "svc") if "ignoring messages from" in x]
    assert len(dropped) == 1 and f"pid {os.getpid()} " in dropped[0], dropped
    go.touch()
    assert mgr.wait_state("svc", ["running", "failed"])["state"] == "running"


def test_watchdog_kept_alive_then_missed(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], tmp_path: Path
) -> None:
    stop = python_service(
        tree,
        tmp_path,
        "wd",
        LIBSYSTEMD_DAEMON,
        type="notify",
        extra='[readiness]\nwatchdog = "1s"\n' + TEMPORARY,
    )
    mgr = svmgr()
    assert mgr.wait_state("wd", ["running", "failed"])["state"] == "running"
    lines = wait_logged(mgr, "wd", "watchdog-enabled")
    # The real sd_watchdog_enabled() accepts WATCHDOG_USEC without WATCHDOG_PID.
    assert "watchdog-enabled 1 1000000 pid=None" in lines
    time.sleep(2.5)  # well past the interval: the pings keep it alive
    info = mgr.status("wd")
    assert info["state"] == "running" and info["extra"]["watchdog"] == "1s"
    stop.touch()
    info = mgr.wait_state("wd", "failed")
    assert info["reason"] == "watchdog timeout: no WATCHDOG=1 within 1s"


def test_missed_watchdog_applies_restart_policy(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], tmp_path: Path
) -> None:
    pytest.importorskip("sdnotify")
    stop = python_service(
        tree,
        tmp_path,
        "wd",
        SDNOTIFY_DAEMON,
        type="notify",
        extra='[readiness]\nwatchdog = "500ms"\n[restart]\ndelay = "100ms"\n',
    )
    mgr = svmgr()
    assert mgr.wait_state("wd", ["running", "failed"])["state"] == "running"
    stop.touch()  # every start from now on stops pinging after READY=1
    mgr.wait_for(lambda: mgr.status("wd")["restarts"] >= 1, what="a restart")
    assert "wd: stopping -> restarting (watchdog timeout: no WATCHDOG=1 within 500ms)" in mgr.log()


@needs_systemd_notify
def test_watchdog_trigger(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    tree.simple(
        "hung",
        "systemd-notify --ready; sleep 0.3; systemd-notify WATCHDOG=trigger; exec sleep 1000",
        type="notify",
        extra=TEMPORARY,
    )
    mgr = svmgr()
    info = mgr.wait_state("hung", "failed")
    assert info["reason"] == "watchdog triggered by the service (WATCHDOG=trigger)"


@needs_systemd_notify
def test_readiness_applies_to_every_start(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], tmp_path: Path
) -> None:
    # Only the first start says READY=1; a restart must wait again (and a
    # fresh socket means nothing the first run sent can leak into it).
    count = tmp_path / "count"
    tree.simple(
        "once",
        f"n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}; "
        "if [ $n -eq 1 ]; then systemd-notify --ready; systemd-notify --ready; fi; exec sleep 1000",
        type="notify",
        extra='[readiness]\ntimeout = "1s"\n' + TEMPORARY,
    )
    mgr = svmgr()
    assert mgr.wait_state("once", ["running", "failed"])["state"] == "running"
    with pytest.raises(RemoteError):
        mgr.request("RestartService", {"name": "once"})
    info = mgr.wait_state("once", "failed")
    assert info["reason"] == "readiness timeout after 1s"
    assert count.read_text().strip() == "2"
    assert not (mgr.runtime_dir / "notify" / "once.sock").exists()  # closed and removed


# ----------------------------------------------------------- protocol details


@needs_systemd_notify
def test_forking_daemon_with_mainpid(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    # The parent names its daemon (before exiting) and declares readiness.
    tree.simple(
        "forks",
        "sleep 1000 & systemd-notify MAINPID=$! READY=1; exit 0",
        type="forking",
        extra=NOTIFY,
    )
    mgr = svmgr()
    info = mgr.wait_state("forks", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    main = info["main_pid"]
    assert main != info["pid"]
    assert Path(f"/proc/{main}/comm").read_text().strip() == "sleep"
    mgr.request("StopService", {"name": "forks"})
    mgr.wait_for(lambda: not Path(f"/proc/{main}").exists() or _zombie(main), what="daemon gone")


@needs_systemd_notify
def test_forking_daemon_declares_readiness_itself(
    tree: ConfigTree, svmgr: Callable[..., Svmgr]
) -> None:
    # The parent only names the daemon and exits; the daemon (a subshell,
    # whose systemd-notify sends the subshell's PID) says READY=1 later.
    tree.simple(
        "forks",
        "(sleep 0.5; systemd-notify --ready --status=daemon; exec sleep 1000) & "
        "systemd-notify MAINPID=$!; exit 0",
        type="forking",
        extra=NOTIFY,
    )
    mgr = svmgr()
    info = mgr.wait_state("forks", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    assert info["status_text"] == "daemon" and info["main_pid"] != info["pid"]


@needs_systemd_notify
def test_exec_systemd_notify(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    # exec'd by the service, root systemd-notify's parent is svmgr itself,
    # so its datagram carries svmgr's PID: accepted on this service's socket.
    tree.simple(
        "execs",
        "sleep 1000 & exec systemd-notify MAINPID=$! READY=1 --status=direct",
        type="forking",
        extra=NOTIFY,
    )
    mgr = svmgr()
    info = mgr.wait_state("execs", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    assert info["status_text"] == "direct"
    assert Path(f"/proc/{info['main_pid']}/comm").read_text().strip() == "sleep"


@needs_systemd_notify
def test_forking_ready_without_mainpid_fails_clearly(
    tree: ConfigTree, svmgr: Callable[..., Svmgr]
) -> None:
    # The daemon says READY=1 but nobody ever names it: the start fails
    # (and the manager can still stop everything afterwards).
    tree.simple(
        "anon",
        "(sleep 0.3; systemd-notify --ready; exec sleep 1000) & exit 0",
        type="forking",
        extra=NOTIFY + TEMPORARY,
    )
    mgr = svmgr()
    info = mgr.wait_state("anon", "failed")
    assert info["reason"] == "forking service became ready without a main PID"
    assert mgr.stop(timeout=20) == 0


@needs_systemd_notify
def test_reloading_and_stopping(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    tree.simple(
        "rl",
        "trap 'systemd-notify RELOADING=1; sleep 0.5; systemd-notify --ready' HUP; "
        "trap 'systemd-notify STOPPING=1; sleep 0.5; exit 0' USR1; "
        "systemd-notify --ready; while :; do sleep 0.05; done",
        type="notify",
        extra=TEMPORARY,
    )
    mgr = svmgr()
    info = mgr.wait_state("rl", ["running", "failed"])
    assert info["state"] == "running" and info["substate"] == ""
    os.kill(info["pid"], signal.SIGHUP)
    mgr.wait_for(lambda: mgr.status("rl")["substate"] == "reloading", what="reloading")
    mgr.wait_for(lambda: mgr.status("rl")["substate"] == "", what="READY=1 after reloading")
    assert mgr.status("rl")["state"] == "running"
    os.kill(info["pid"], signal.SIGUSR1)
    mgr.wait_for(lambda: mgr.status("rl")["substate"] == "stopping", what="stopping")
    mgr.wait_state("rl", "stopped")


@needs_systemd_notify
def test_extend_timeout(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    tree.simple(
        "slow",
        "systemd-notify EXTEND_TIMEOUT_USEC=5000000; sleep 2; systemd-notify --ready; exec sleep 1000",
        type="notify",
        extra='[readiness]\ntimeout = "1s"\n' + TEMPORARY,
    )
    mgr = svmgr()
    info = mgr.wait_state("slow", ["running", "failed"])
    assert info["state"] == "running", info["reason"]


@needs_systemd_notify
def test_errno_is_reported(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    tree.simple("err", "systemd-notify --ready ERRNO=2; exec sleep 1000", type="notify")
    mgr = svmgr()
    assert mgr.wait_state("err", ["running", "failed"])["state"] == "running"
    mgr.wait_for(lambda: mgr.status("err")["extra"].get("status-errno") == 2, what="status-errno")
    assert any("errno 2 (No such file or directory)" in x for x in logs(mgr, "err"))


@needs_systemd_notify
def test_long_runtime_dir_uses_an_abstract_socket(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], tmp_path: Path
) -> None:
    # control.sock still fits into sun_path, notify/NAME.sock does not.
    name = "a-service-with-a-rather-long-name-for-its-socket"
    room = 107 - len(str(tmp_path)) - len("/control.sock") - 1
    runtime = tmp_path / ("r" * room)
    assert len(str(runtime / "notify" / f"{name}.sock")) > 107
    tree.simple(name, "systemd-notify --ready; exec sleep 1000", type="notify")
    mgr = svmgr(runtime_dir=runtime)
    info = mgr.wait_state(name, ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    assert info["extra"]["notify-socket"].startswith("@dynamod-notify/")


@needs_systemd_notify
@needs_root
def test_service_running_as_another_user(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], open_dir: Path
) -> None:
    # Not root, systemd-notify can only send its own PID: a child of the
    # service's shell, admitted because it is in the service's session.
    # Naming a root process as MAINPID is refused.
    tree.simple(
        "unpriv",
        f'systemd-notify --pid={os.getpid()}; systemd-notify --ready --status="as $(id -un)"; exec sleep 1000',
        type="notify",
        extra='[service.user]\nuser = "nobody"\n',
    )
    mgr = svmgr(runtime_dir=open_dir / "run")
    info = mgr.wait_state("unpriv", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    assert info["status_text"] == "as nobody"
    assert info["main_pid"] == info["pid"]
    assert any(f"refusing MAINPID={os.getpid()} from uid 65534" in x for x in logs(mgr, "unpriv"))
    sock = open_dir / "run" / "notify" / "unpriv.sock"
    assert sock.stat().st_mode & 0o777 == 0o666
    assert sock.parent.stat().st_mode & 0o777 == 0o755


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


@needs_systemd_notify
def test_dynamodctl_status_shows_reason_and_status(
    tree: ConfigTree, svmgr: Callable[..., Svmgr]
) -> None:
    dynamodctl = Path(sys.executable).parent / "dynamodctl"
    if not dynamodctl.exists():
        pytest.skip("dynamodctl not installed")
    tree.simple(
        "mute", "exec sleep 1000", type="notify", extra='[readiness]\ntimeout = "1s"\n' + TEMPORARY
    )
    tree.simple(
        "talk",
        "systemd-notify --ready --status='Serving 3 clients'; exec sleep 1000",
        type="notify",
    )
    mgr = svmgr()
    mgr.wait_state("mute", "failed")
    mgr.wait_state("talk", "running")

    def status(name: str) -> str:
        done = subprocess.run(
            [dynamodctl, "--socket", mgr.socket, "status", name],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout

    assert "readiness timeout after 1s" in status("mute")
    talk = status("talk")
    assert "Serving 3 clients" in talk and "notify/talk.sock" in talk
