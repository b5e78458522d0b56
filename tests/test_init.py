"""dynamod-init as PID 1 of a real PID namespace (needs root and unshare)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dynamod.testing import ConfigTree, InitContainer

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None,
    reason="PID 1 tests need root, unshare and nsenter (CI runs them as root)",
)

FAST = {
    "DYNAMOD_HEARTBEAT_INTERVAL": "0.3",
    "DYNAMOD_BACKOFF_MIN": "0.2",
    "DYNAMOD_BACKOFF_MAX": "30",
    "DYNAMOD_STABLE_AFTER": "20",
}


def shell_script(tmp_path: Path, marker: Path) -> str:
    """An 'emergency shell' for tests: records that it ran, then exits."""
    script = tmp_path / "fake-shell"
    script.write_text(f"#!/bin/sh\necho \"$DYNAMOD_EMERGENCY_REASON\" >> {marker}\nsleep 0.3\n")
    script.chmod(0o755)
    (tmp_path / "console").touch()
    return str(script)


def svmgr_pid(log: str) -> int:
    return int(re.findall(r"svmgr started \(pid (\d+)\)", log)[-1])


def host_pid(container: InitContainer, ns_pid: int) -> int:
    """Translate a PID inside the namespace to the host's PID."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        m = re.search(r"^NSpid:\s+(\d+)\s+(\d+)", status, re.M)
        if m and int(m.group(2)) == ns_pid and _in_ns(entry, container.pid):
            return int(entry.name)
    raise LookupError(ns_pid)


def _in_ns(proc: Path, init_pid: int) -> bool:
    try:
        return os.readlink(proc / "ns/pid") == os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return False


def demo_tree(tmp_path: Path) -> ConfigTree:
    tree = ConfigTree(tmp_path / "etc")
    tree.simple("base", "trap 'echo base-term; exit 0' TERM; while :; do sleep 0.1; done")
    tree.simple(
        "middle",
        "trap 'echo middle-term; exit 0' TERM; while :; do sleep 0.1; done",
        extra='[dependencies]\nrequires = ["base"]\n',
    )
    tree.simple(
        "top",
        "trap 'echo top-term; exit 0' TERM; while :; do sleep 0.1; done",
        extra='[dependencies]\nrequires = ["middle"]\n',
    )
    return tree


def test_ordered_shutdown_on_sigterm(tmp_path: Path) -> None:
    tree = demo_tree(tmp_path)
    with InitContainer(tree.root, tmp_path / "w", env=FAST) as c:
        c.wait_log("top: waiting-ready -> running")
        c.signal(signal.SIGTERM)
        assert c.wait(30) == 0
        log = c.log()
    stops = [log.index(f"{n}: stopping -> stopped") for n in ("top", "middle", "base")]
    assert stops == sorted(stops), log
    assert "final shutdown sequence (poweroff)" in log
    assert "exiting with status 0" in log


def test_reboot_signals_map_to_container_exit_codes(tmp_path: Path) -> None:
    tree = demo_tree(tmp_path)
    with InitContainer(tree.root, tmp_path / "w", env=FAST) as c:
        c.wait_log("top: waiting-ready -> running")
        c.signal(signal.SIGRTMIN + 5)
        assert c.wait(30) == 133
        assert "shutdown requested: reboot" in c.log()


def test_dynamodctl_shutdown_goes_through_svmgr_then_init(tmp_path: Path) -> None:
    tree = demo_tree(tmp_path)
    with InitContainer(tree.root, tmp_path / "w", env=FAST) as c:
        c.wait_log("top: waiting-ready -> running")
        c.request("Shutdown", {"kind": "halt"})
        assert c.wait(30) == 0
        log = c.log()
    assert log.index("top: stopping -> stopped") < log.index("shutdown requested: halt")
    assert "final shutdown sequence (halt)" in log


def test_killed_svmgr_restarts_with_backoff_then_emergency(tmp_path: Path) -> None:
    tree = demo_tree(tmp_path)
    marker = tmp_path / "shell-ran"
    env = dict(FAST, DYNAMOD_EMERGENCY_SHELL=shell_script(tmp_path, marker),
               DYNAMOD_CONSOLE=str(tmp_path / "console"))
    with InitContainer(tree.root, tmp_path / "w", env=env) as c:
        for i in range(1, 6):
            log = c.wait_log("svmgr started", count=i)
            os.kill(host_pid(c, svmgr_pid(log)), signal.SIGKILL)
            c.wait_log("killed by SIGKILL", count=i)
        log = c.wait_log("svmgr crash loop")
        delays = [float(x) for x in re.findall(r"restarting svmgr in ([\d.]+)s", log)]
        assert delays[:4] == [0.2, 0.4, 0.8, 1.6], log
        # The shell ran; when it exits init tries svmgr again.
        c.wait_log("emergency shell exited 0; trying svmgr again")
        c.wait_log("svmgr started", count=6)
        assert "crash loop" in marker.read_text()
        c.signal(signal.SIGTERM)
        assert c.wait(30) == 0


def test_stopped_svmgr_is_detected_by_heartbeat_and_replaced(tmp_path: Path) -> None:
    tree = demo_tree(tmp_path)
    with InitContainer(tree.root, tmp_path / "w", env=FAST) as c:
        log = c.wait_log("top: waiting-ready -> running")
        os.kill(host_pid(c, svmgr_pid(log)), signal.SIGSTOP)
        c.wait_log("missed 3 heartbeats; killing it")
        c.wait_log("svmgr started", count=2)
        c.signal(signal.SIGTERM)
        assert c.wait(30) == 0


def test_garbage_on_the_socketpair_is_logged_and_ignored(tmp_path: Path) -> None:
    fake = tmp_path / "fake-svmgr"
    fake.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, socket, struct, time
        from dynamod.ipc.framing import encode_frame
        s = socket.socket(fileno=int(os.environ["DYNAMOD_INIT_FD"]))
        hb = lambda n: encode_frame({{"id": n, "kind": "event", "type": "Heartbeat", "body": {{"seq": n}}}})
        s.sendall(b"this is not a frame at all" + hb(1))
        s.sendall(b"DM" + struct.pack("<I", 50_000_000) + hb(2))
        s.sendall(b"DM" + struct.pack("<I", 2) + b"\\xc1\\xc1" + hb(3))
        s.sendall(encode_frame({{"id": 4, "kind": "event", "type": "NoSuchThing", "body": {{}}}}))
        s.sendall(encode_frame({{"id": 5, "kind": "event", "type": "RequestShutdown", "body": {{"kind": "poweroff"}}}}))
        time.sleep(1)
        """))
    fake.chmod(0o755)
    tree = ConfigTree(tmp_path / "etc")
    with InitContainer(tree.root, tmp_path / "w", env=dict(FAST, DYNAMOD_SVMGR_COMMAND=str(fake))) as c:
        assert c.wait(30) == 0
        log = c.log()
    assert "ignoring bad data from svmgr" in log
    assert "ignoring unknown message 'NoSuchThing'" in log
    assert "shutdown requested: poweroff" in log


def test_ten_thousand_orphans_are_reaped(tmp_path: Path) -> None:
    tree = demo_tree(tmp_path)
    forker = textwrap.dedent("""\
        import os
        for _ in range(10_000):
            pid = os.fork()
            if pid == 0:
                if os.fork() == 0:
                    os._exit(0)
                os._exit(0)
            os.waitpid(pid, 0)
        """)
    with InitContainer(tree.root, tmp_path / "w", env=FAST) as c:
        c.wait_log("top: waiting-ready -> running")
        r = c.run(sys.executable, "-c", forker, timeout=300)
        assert r.returncode == 0, r.stderr

        def zombies() -> int:
            n = 0
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and _in_ns(entry, c.pid):
                    try:
                        if ") Z " in (entry / "stat").read_text():
                            n += 1
                    except OSError:
                        pass
            return n

        deadline = time.monotonic() + 20
        while zombies() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert zombies() == 0
        c.signal(signal.SIGTERM)
        assert c.wait(30) == 0


def wait_ignoring_term(c: InitContainer, name: str) -> None:
    """Until the service's shell has run its ``trap '' TERM``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            lines = c.request("GetLogs", {"name": name})["lines"]
        except OSError:
            lines = []
        if any(text == "ignoring TERM" for _, text in lines):
            return
        time.sleep(0.05)
    raise TimeoutError(c.log())


IGNORE_TERM = "trap '' TERM; echo 'ignoring TERM'; while :; do sleep 0.1; done"


def test_service_ignoring_sigterm_is_killed_at_its_timeout(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path / "etc")
    tree.simple("stubborn", IGNORE_TERM, extra='[shutdown]\nstop-timeout = "1s"\n')
    with InitContainer(tree.root, tmp_path / "w", env=FAST) as c:
        c.wait_log("stubborn: waiting-ready -> running")
        wait_ignoring_term(c, "stubborn")
        c.signal(signal.SIGTERM)
        assert c.wait(30) == 0
    # Killed at its own timeout, not by the global shutdown deadline.
    log = c.log()
    assert "stubborn: stopping -> stopped (killed after stop timeout (1s))" in log
    assert "global shutdown deadline passed" not in log


def test_global_deadline_bounds_a_hung_shutdown(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path / "etc")
    tree.simple("hung", IGNORE_TERM, extra='[shutdown]\nstop-timeout = "10m"\n')
    env = dict(FAST, DYNAMOD_SHUTDOWN_TIMEOUT="2")
    with InitContainer(tree.root, tmp_path / "w", env=env) as c:
        c.wait_log("hung: waiting-ready -> running")
        wait_ignoring_term(c, "hung")
        c.signal(signal.SIGTERM)
        # Down well before hung's own 10 minutes: the global deadline ended it.
        assert c.wait(60) == 0
        log = c.log()
    assert "global shutdown deadline passed" in log
    assert "sending SIGKILL" in log


def test_injected_handler_exception_is_logged_and_loop_goes_on(tmp_path: Path) -> None:
    tree = demo_tree(tmp_path)
    env = dict(FAST, DYNAMOD_INIT_INJECT_FAULT="sigchld,svmgr-message")
    with InitContainer(tree.root, tmp_path / "w", env=env) as c:
        c.wait_log("handler svmgr-message failed: RuntimeError: injected fault")
        c.wait_log("top: waiting-ready -> running")
        # An orphan makes init handle SIGCHLD: the handler raises, yet the
        # orphan is still reaped (init's periodic reap) and init goes on.
        r = c.run("/bin/sh", "-c", "sleep 0.2 & echo $!")
        orphan = int(r.stdout.strip())
        c.wait_log("handler sigchld failed: RuntimeError: injected fault")

        def zombie() -> bool:
            try:
                return ") Z " in Path(f"/proc/{host_pid(c, orphan)}/stat").read_text()
            except (LookupError, OSError):
                return False

        deadline = time.monotonic() + 10
        while zombie() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not zombie()
        assert c.request("ServiceStatus", {"name": "top"})["service"]["state"] == "running"
        c.signal(signal.SIGTERM)
        assert c.wait(30) == 0


def test_sigusr2_starts_the_emergency_shell(tmp_path: Path) -> None:
    tree = demo_tree(tmp_path)
    marker = tmp_path / "shell-ran"
    env = dict(FAST, DYNAMOD_EMERGENCY_SHELL=shell_script(tmp_path, marker),
               DYNAMOD_CONSOLE=str(tmp_path / "console"))
    with InitContainer(tree.root, tmp_path / "w", env=env) as c:
        c.wait_log("top: waiting-ready -> running")
        c.signal(signal.SIGUSR2)
        c.wait_log("emergency shell exited 0")
        assert marker.read_text().strip() == "SIGUSR2"
        # svmgr kept running meanwhile.
        assert c.request("ServiceStatus", {"name": "top"})["service"]["state"] == "running"
        c.signal(signal.SIGTERM)
        assert c.wait(30) == 0


def test_init_refuses_to_run_when_not_pid1() -> None:
    import subprocess

    r = subprocess.run([sys.executable, "-m", "dynamod.init.main"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "must run as PID 1" in r.stderr


def test_restarted_svmgr_adopts_running_services_instead_of_starting_copies(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path / "etc")
    tree.service("once", """
        [service]
        name = "once"
        type = "oneshot"
        exec = ["/bin/sh", "-c", "echo ran >> %s"]
        [restart]
        policy = "temporary"
        """ % (tmp_path / "once-runs"))
    tree.simple("worker", "trap 'exit 0' TERM; while :; do sleep 0.1; done",
                extra='[dependencies]\nrequires = ["once"]\n')
    env = dict(FAST, DYNAMOD_BACKOFF_MIN="0.1")
    with InitContainer(tree.root, tmp_path / "w", env=env) as c:
        c.wait_log("worker: waiting-ready -> running")
        # Answered after the engine pass that started worker, which journals
        # its changes before svmgr serves anything else (docs/init.md): the
        # record is complete now.
        before = c.request("ServiceStatus", {"name": "worker"})["service"]["pid"]
        log = c.log()
        os.kill(host_pid(c, svmgr_pid(log)), signal.SIGKILL)
        c.wait_log("adopted from the previous svmgr: once, worker")
        after = c.request("ServiceStatus", {"name": "worker"})
        assert after["service"]["pid"] == before
        assert after["service"]["state"] == "running"
        assert (tmp_path / "once-runs").read_text() == "ran\n"  # not run twice
        # One worker process, not two.
        workers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _in_ns(p, c.pid)
                   and b"while :" in (p / "cmdline").read_bytes()]
        assert len(workers) == 1, workers
        # The adopted process dies: its status comes from init, and the
        # permanent policy restarts it under the new svmgr.
        os.kill(host_pid(c, before), signal.SIGKILL)
        c.wait_log("worker: running -> restarting (killed by SIGKILL)")
        c.wait_log("worker: waiting-ready -> running", count=2)
        c.signal(signal.SIGTERM)
        assert c.wait(30) == 0


def test_pid1_imports_stay_small() -> None:
    """What dynamod-init loads (every module its boot path imports) pulls in
    none of the heavy modules: each is hundreds of KiB of PID 1's memory."""
    import subprocess

    code = (
        "import sys\n"
        "import dynamod.init.main, dynamod.init.core, dynamod.init.sysinit, dynamod.init.final\n"
        "import dynamod.init.phase_a, dynamod.init.log, dynamod.init.syscalls\n"
        "heavy = ('typing', 'asyncio', 'argparse', 'dataclasses', 'traceback', 'ctypes', 'pluggy',\n"
        "         'importlib.metadata', 'ssl', 'hashlib', 'pathlib', 'inspect')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
