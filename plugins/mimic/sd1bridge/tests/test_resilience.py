"""The bridge as an adversary would treat it: svmgr dying under a waiting
systemctl, svmgr and the bridge restarted, the machine left as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from dynamod_sd1bridge.testing import settle, slow_oneshot

from dynamod.testing import Svmgr


def test_machine_run_systemd_untouched(stack, tree):
    before = sorted(os.listdir("/run/systemd")) if os.path.isdir("/run/systemd") else None
    tree.simple("web")
    stack.start(("web",))
    assert stack.ns.exists("/run/systemd/system")  # inside the namespace
    assert stack.systemctl("is-active", "web").stdout.strip() == "active"
    after = sorted(os.listdir("/run/systemd")) if os.path.isdir("/run/systemd") else None
    assert before == after


def test_svmgr_dying_under_a_waiting_start(stack, tree, work):
    tree.simple("web")
    slow_oneshot(tree, "slow", work / "go")
    stack.start(("web",))
    waiter = subprocess.Popen(stack.ns.argv(["systemctl", "start", "slow"]), env=stack.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    settle(lambda: "slow.service" in stack.systemctl("list-jobs").stdout, "the job listed", stack)
    stack.svmgr.proc.send_signal(signal.SIGKILL)
    stack.svmgr.proc.wait()
    # The job can never end in a dead svmgr: the bridge ends it, no hang.
    _out, err = waiter.communicate(timeout=60)
    assert (waiter.returncode, err.strip()) == (1, "Job for slow.service canceled.")
    r = stack.systemctl("is-active", "web")
    assert r.returncode != 0  # no svmgr: an error, not a guess
    # A new svmgr on the same socket: the bridge reconnects by itself.
    stack.svmgr = Svmgr(tree.root, work / "run")
    stack.svmgr.wait_state("web", "running")
    settle(lambda: stack.systemctl("is-active", "web").stdout.strip() == "active",
           "the bridge back on the new svmgr", stack)
    (work / "go").touch()
    r = stack.systemctl("start", "slow")
    assert r.returncode == 0, r.stderr
    # New job ids do not reuse the old ones (the first svmgr's job 1 ended).
    assert stack.svmgr.status("slow")["state"] == "exited"


def test_bridge_restarted(stack, tree):
    tree.simple("web")
    stack.start(("web",))
    stack.bridge.send_signal(signal.SIGKILL)
    stack.bridge.wait()
    stack.stop_bridge()
    r = stack.systemctl("is-active", "web")
    assert r.returncode != 0
    stack.start_bridge()
    assert stack.systemctl("is-active", "web").stdout.strip() == "active"
    r = stack.systemctl("restart", "web")
    assert r.returncode == 0, r.stderr


def _peer_socket(stack) -> str:
    return f"/proc/{stack.ns.proc.pid}/root/run/systemd/private"


def test_private_socket_refuses_non_root_and_survives_garbage(ns, tree, work):
    import socket as so

    from dynamod_sd1bridge.testing import Stack

    tree.simple("web")
    stack = Stack(work, ns, tree, "private")
    try:
        stack.start(("web",))
        path = _peer_socket(stack)
        # A non-root peer is closed before any handshake.
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            sys.executable, "-c",
                            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
                            "s.sendall(b'\\0AUTH EXTERNAL\\r\\n'); print(repr(s.recv(100)))", path],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() in ("b''", "") or "Connection reset" in r.stderr, (r.stdout, r.stderr)
        # Root, authenticated, then bytes that are no D-Bus message.
        s = so.socket(so.AF_UNIX)
        s.settimeout(15)
        s.connect(path)
        s.sendall(b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n")
        assert s.recv(100).startswith(b"OK ")
        s.sendall(b"l\x01\x00\x01" + b"\xff" * 200)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        s.close()
        # A client that connects and never speaks does not hold anything up.
        idle = so.socket(so.AF_UNIX)
        idle.connect(path)
        r = stack.systemctl("is-active", "web")
        assert (r.returncode, r.stdout.strip()) == (0, "active")
        idle.close()
        assert stack.bridge.poll() is None
    finally:
        stack.stop()


def test_many_units(stack, tree):
    for i in range(250):
        tree.service(f"u{i}", f'[service]\nname = "u{i}"\nexec = ["/bin/sleep", "1000000"]\n')
    stack.start(("u249",))
    settle(lambda: all(s["state"] == "running" for s in stack.svmgr.services().values()),
           "all 250 running", stack)
    r = stack.systemctl("list-units", "--all", "--type=service")
    assert r.returncode == 0
    assert "250 loaded units listed." in r.stdout
    r = stack.systemctl("is-active", *[f"u{i}" for i in range(250)])
    assert r.returncode == 0 and r.stdout.split() == ["active"] * 250
