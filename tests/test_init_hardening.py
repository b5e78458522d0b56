"""PID 1 under adverse conditions (issue 13): a console that takes no
output, a final sync that never returns, a link partner that floods it."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from dynamod.testing import ConfigTree, InitContainer, wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="PID 1 tests need root, unshare and nsenter (CI runs them as root)"
)

FAST = {"DYNAMOD_HEARTBEAT_INTERVAL": "0.3", "DYNAMOD_BACKOFF_MIN": "0.2"}

# A stand-in svmgr: floods init's log (each LogToKmsg is a line init writes
# to its console), leaves orphans for init to reap, then checks that init
# still answers heartbeats and reports the orphans, and asks for a shutdown.
FAKE_SVMGR = """\
#!{python}
import os, socket, sys, time
from dynamod.ipc.framing import decode_frame, encode_frame
s = socket.socket(fileno=int(os.environ["DYNAMOD_INIT_FD"]))
s.settimeout(20)  # init not taking a message in 20 s: it is stuck
def send(kind, body):
    s.send(encode_frame({{"id": 0, "kind": "event", "type": kind, "body": body}}))
for i in range({lines}):
    send("LogToKmsg", {{"level": 6, "message": f"flood line {{i}} " + "x" * 200}})
orphans = set()
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(0.2)
            os._exit(7)
        os.write(1, b"")
        os._exit(0)
    os.waitpid(pid, 0)
acks, reaped = 0, 0
deadline = time.monotonic() + 30
seq = 0
while (acks < 10 or reaped < 20) and time.monotonic() < deadline:
    seq += 1
    send("Heartbeat", {{"seq": seq}})
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            msg = decode_frame(s.recv(70000))
        except TimeoutError:
            break
        if msg["type"] == "HeartbeatAck":
            acks += 1
        elif msg["type"] == "Orphans":
            reaped += sum(1 for _pid, status in msg["body"]["exits"] if os.waitstatus_to_exitcode(status) == 7)
    s.settimeout(20)
with open({result!r} + ".tmp", "w") as f:
    f.write(f"acks {{acks}} reaped {{reaped}}\\n")
os.rename({result!r} + ".tmp", {result!r})
# The test drains the console now; init writes what it dropped meanwhile.
deadline = time.monotonic() + 40
while not os.path.exists({result!r} + ".drained") and time.monotonic() < deadline:
    seq += 1
    send("Heartbeat", {{"seq": seq}})
    time.sleep(0.1)
# Lines logged from now on reach the console (again until the test saw one).
while not os.path.exists({result!r} + ".seen") and time.monotonic() < deadline:
    send("LogToKmsg", {{"level": 6, "message": "the last line"}})
    time.sleep(0.2)
send("RequestShutdown", {{"kind": "poweroff"}})
time.sleep(30)
"""


def fake_svmgr(tmp_path: Path, lines: int) -> tuple[str, Path]:
    result = tmp_path / "fake-result"
    script = tmp_path / "fake-svmgr"
    script.write_text(FAKE_SVMGR.format(python=sys.executable, lines=lines, result=str(result)))
    script.chmod(0o755)
    return str(script), result


def test_a_console_that_takes_nothing_does_not_stop_pid1(tmp_path: Path) -> None:
    master, slave = os.openpty()  # nobody reads the master: the console is stuck
    try:
        fake, result = fake_svmgr(tmp_path, lines=3000)  # ~700 KB, far beyond a pty's buffer
        env = dict(FAST, DYNAMOD_SVMGR_COMMAND=fake)
        with InitContainer(ConfigTree(tmp_path / "etc").root, tmp_path / "w", env=env, stdio=slave) as c:
            # init kept answering heartbeats and reaping (and reporting the
            # orphans to its svmgr) while its console took nothing.
            wait_until(result.exists, "the stand-in svmgr's verdict", timeout=60)
            assert _at_least(result, 10, 20), result.read_text()
            # Someone reads the console again: what init dropped meanwhile
            # is counted there, and the lines after it arrive.
            os.set_blocking(master, False)
            seen = bytearray()

            def drain() -> bytes:
                try:
                    while chunk := os.read(master, 65536):
                        seen.extend(chunk)
                except BlockingIOError:
                    pass
                return bytes(seen)

            drain()
            Path(str(result) + ".drained").touch()
            wait_until(lambda: b"the last line" in drain(), "init's console output after the drain",
                       timeout=30)
            Path(str(result) + ".seen").touch()
            assert c.wait(60) == 0
        text = seen.decode(errors="replace")
        assert "flood line 0 " in text
        assert "flood line 2999 " not in text  # dropped: the console was stuck
        assert "lines dropped: the console did not take them" in text
    finally:
        os.close(master)
        os.close(slave)


def _at_least(result: Path, acks: int, reaped: int) -> bool:
    words = result.read_text().split()
    return int(words[1]) >= acks and int(words[3]) >= reaped


def test_a_final_sync_that_never_returns_does_not_hang_the_shutdown(tmp_path: Path) -> None:
    marker = tmp_path / "sync-started"
    hang = tmp_path / "hanging-sync"
    hang.write_text(f"#!/bin/sh\necho started > {marker}\nexec sleep 3600\n")
    hang.chmod(0o755)
    tree = ConfigTree(tmp_path / "etc")
    tree.simple("svc")
    env = dict(FAST, DYNAMOD_SYNC_COMMAND=str(hang), DYNAMOD_SYNC_TIMEOUT="1")
    with InitContainer(tree.root, tmp_path / "w", env=env) as c:
        c.wait_log("svc: waiting-ready -> running")
        c.signal(signal.SIGTERM)
        assert c.wait(60) == 0
        log = c.log()
    assert marker.read_text() == "started\n"
    assert "sync did not finish within 1s; going on without it" in log
    assert "exiting with status 0" in log


def test_bad_messages_on_the_link_are_skipped_whole(tmp_path: Path) -> None:
    """A SOCK_SEQPACKET link: each message is one frame; a bad one is logged
    and the next message is read normally."""
    fake = tmp_path / "fake-svmgr"
    fake.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, socket, struct, time
        from dynamod.ipc.framing import encode_frame
        s = socket.socket(fileno=int(os.environ["DYNAMOD_INIT_FD"]))
        assert s.type == socket.SOCK_SEQPACKET
        ev = lambda kind, body: encode_frame({{"id": 0, "kind": "event", "type": kind, "body": body}})
        s.send(b"this is not a frame at all")
        s.send(ev("LogToKmsg", {{"level": 6, "message": "after garbage"}}))
        s.send(ev("LogToKmsg", {{"level": 6, "message": "two frames"}}) + ev("Heartbeat", {{"seq": 1}}))
        s.send(b"DM" + struct.pack("<I", 10) + b"short")
        s.send(ev("LogToKmsg", {{"level": 6, "message": "after a short frame"}}))
        s.send(b"x" * 70000)
        s.send(ev("RequestShutdown", {{"kind": "poweroff"}}))
        time.sleep(30)
        """))
    fake.chmod(0o755)
    env = dict(FAST, DYNAMOD_SVMGR_COMMAND=str(fake))
    with InitContainer(ConfigTree(tmp_path / "etc").root, tmp_path / "w", env=env) as c:
        assert c.wait(30) == 0
        log = c.log()
    assert "svmgr: after garbage" in log
    assert "svmgr: after a short frame" in log
    assert "svmgr: two frames" not in log  # two frames in one message: refused whole
    assert "but 6 payload bytes in the message" in log or "payload bytes in the message" in log
    assert "message larger than" in log
    assert "shutdown requested: poweroff" in log


def test_svmgr_understands_a_stream_link_from_an_older_init(tmp_path: Path) -> None:
    """A dynamod-init started before an upgrade keeps its stream socketpair
    until the next boot: a new svmgr still heartbeats over it."""
    import socket
    import subprocess

    from dynamod.ipc.framing import FrameDecoder

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    tree = ConfigTree(tmp_path / "etc")
    env = dict(os.environ, DYNAMOD_INIT_FD=str(theirs.fileno()), DYNAMOD_HEARTBEAT_INTERVAL="0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynamod.svmgr.main", "--config-dir", str(tree.root),
         "--runtime-dir", str(tmp_path / "run")],
        env=env, pass_fds=[theirs.fileno()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    theirs.close()
    try:
        ours.settimeout(15)
        decoder = FrameDecoder()
        beats: list[dict] = []

        def more() -> bool:
            beats.extend(p for p in decoder.feed(ours.recv(65536)) if p["type"] == "Heartbeat")
            return len(beats) >= 3

        wait_until(more, "three heartbeats over a stream link")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        ours.close()


def test_logging_to_a_stuck_terminal_returns_and_counts(tmp_path: Path) -> None:
    """dynamod.init.log alone, in a process whose stderr is a pty nobody
    reads: 5,000 lines return (the old blocking write stopped at the first
    few KiB) and the dropped ones are counted; svmgr's shared fd 2 stays
    blocking."""
    import subprocess

    code = (
        "import os\n"
        "from dynamod.init import log\n"
        "for i in range(5000):\n"
        "    log.log(f'line {i} ' + 'y' * 100)\n"
        "print(log.dropped_console_lines(), os.get_blocking(2), flush=True, file=open(os.environ['OUT'], 'w'))\n"
    )
    master, slave = os.openpty()
    out = tmp_path / "out"
    try:
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=slave, stdout=subprocess.DEVNULL,
                                env=dict(os.environ, OUT=str(out)))
        try:
            assert proc.wait(60) == 0  # a hang guard: it returns at once
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        dropped, blocking = out.read_text().split()
        assert int(dropped) > 4000 and blocking == "True"
    finally:
        os.close(master)
        os.close(slave)
