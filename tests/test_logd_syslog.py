"""The syslog socket of dynamod-logd with the real logger(1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dynamod.logd.record import WARNING
from dynamod.logd.syslog import parse
from dynamod.logd.testing import add_logd, all_records, wait_logd
from dynamod.testing import wait_until

SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"<28>Dec  3 12:00:00 mydaemon[1]: from a daemon", sys.argv[1])
time.sleep(60)
"""


def test_syslog_lines_carry_priority_and_tag_and_a_daemon_is_credited_to_its_service(
        tree, svmgr, tmp_path: Path) -> None:
    rt, sock = tmp_path / "rt", tmp_path / "log.sock"
    add_logd(tree, rt, tmp_path / "log", config=f'[syslog]\nsocket = "{sock}"')
    wait_sock = f"while [ ! -S {sock} ]; do sleep 0.05; done; "
    tree.simple("webapp", wait_sock + f"logger -u {sock} -t myapp -p daemon.warning 'hello from bsd'; "
                f"logger -u {sock} --rfc5424 -t myapp -p local3.err 'hello from 5424'; exec sleep 60")
    tree.simple("daemon", wait_sock + f"exec {sys.executable} -c '{SENDER}' {sock}")
    svmgr(runtime_dir=rt)
    wait_logd(rt)
    subprocess.run(["logger", "-u", str(sock), "-t", "outsider", "plain"], check=True)

    def syslog() -> list[dict]:
        return [r for r in all_records(rt) if r["stream"] == "syslog"]

    wait_until(lambda: len(syslog()) >= 4, "four syslog records")
    recs = {r["message"]: r for r in syslog()}
    bsd, rfc, out, dmn = (recs[b"hello from bsd"], recs[b"hello from 5424"], recs[b"plain"],
                          recs[b"from a daemon"])
    assert (bsd["priority"], bsd["extra"]) == (WARNING, {"identifier": "myapp", "facility": 3})
    assert (rfc["priority"], rfc["extra"]) == (3, {"identifier": "myapp", "facility": 19})
    assert (out["service"], out["priority"]) == ("outsider", 5)  # logger's default: user.notice
    # logger has exited by the time logd looks at its pid: named by its tag
    # (docs/logd.md). A sender that is still running is credited to its service.
    assert bsd["service"] in ("webapp", "myapp")
    assert (dmn["service"], dmn["priority"], dmn["extra"]["identifier"]) == ("daemon", WARNING, "mydaemon")
    assert dmn["pid"] != 1  # the sender's real pid (SCM_CREDENTIALS), not the one in the text


def test_logger_reaches_dev_log_in_a_private_mount_namespace(tmp_path: Path) -> None:
    """/dev/log exists only inside the namespace (a tmpfs over /dev there)."""
    rt, conf = tmp_path / "rt", tmp_path / "etc"
    conf.mkdir()
    (conf / "logd.toml").write_text(f'[storage]\ndirectory = "{tmp_path / "log"}"\n[syslog]\nsocket = "/dev/log"\n')
    script = (
        "mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && "
        f"{sys.executable} -m dynamod.logd.main --config-dir {conf} --runtime-dir {rt} 2>{tmp_path}/logd.err & "
        "i=0; while [ ! -S /dev/log ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; "
        "logger -t devlog 'through /dev/log' && logger --rfc5424 -t devlog -p user.crit 'and 5424'; "
        f"i=0; while [ $(ls {tmp_path}/log | wc -l) -eq 0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; "
        "sleep 0.3; kill $!; wait"
    )
    run = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr + (tmp_path / "logd.err").read_text()
    assert not Path("/dev/log").exists()  # the machine is unchanged
    # A new logd (outside the namespace, no syslog socket) reads what was stored.
    (conf / "logd.toml").write_text(f'[storage]\ndirectory = "{tmp_path / "log"}"\n[syslog]\nsocket = ""\n')
    logd = subprocess.Popen([sys.executable, "-m", "dynamod.logd.main", "--config-dir", str(conf),
                             "--runtime-dir", str(rt)], stderr=subprocess.DEVNULL)
    try:
        wait_logd(rt)
        got = [(r["service"], r["priority"], r["message"]) for r in all_records(rt) if r["stream"] == "syslog"]
    finally:
        logd.terminate()
        logd.wait(10)
    assert got == [("devlog", 5, b"through /dev/log"), ("devlog", 2, b"and 5424")]


def test_datagrams_almost_right_are_still_records() -> None:
    assert parse(b"<13>Dec  3 12:00:00 tag[42]: msg") == (1, 5, b"tag", 42, b"msg")
    assert parse(b"no pri at all") == (1, 6, b"", None, b"no pri at all")
    assert parse(b"<999>x: y")[1] == 6  # a PRI out of range is text
    assert parse(b"<14>1 2026-12-03T12:00:00Z host app 7 - [a b=\"]\"] text")[2:] == (b"app", 7, b"text")
    assert parse(b"<14>1 - - - - - -")[4] == b""
    assert parse(b"")[4] == b""
