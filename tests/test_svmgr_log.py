"""Where a plain dynamod-svmgr logs, and what it leaves behind: the README's
walkthrough runs it in the background of a terminal, whose later commands
must not be interleaved with its log."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from dynamod.testing import FOREVER, ConfigTree, ctl, wait_until


def spawn(tree: ConfigTree, run: Path, *extra: str, stderr: int | None = None,
          stdout: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dynamod.svmgr.main", "--config-dir", str(tree.root),
         "--runtime-dir", str(run), "--no-plugins", *extra],
        stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
    )


def read_all(fd: int, until: float) -> bytes:
    out = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def test_on_a_terminal_the_log_goes_to_the_runtime_dir(tree: ConfigTree, tmp_path: Path) -> None:
    tree.simple("web", FOREVER)
    run = tmp_path / "run"
    master, slave = pty.openpty()
    proc = spawn(tree, run, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        sock = str(run / "control.sock")
        wait_until(lambda: ctl("--socket", sock, "is-active", "-q", "web").returncode == 0, "web up")
        assert ctl("--socket", sock, "reload").returncode == 0
        log = run / "svmgr.log"
        wait_until(lambda: "reloaded (requested by pid" in log.read_text(), "the reload's log line")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        terminal = read_all(master, time.monotonic() + 2).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    # The terminal got one line saying where the log is; the log got the rest.
    assert terminal.strip().splitlines() == [
        f"dynamod-svmgr: logging to {run / 'svmgr.log'} (--log FILE, or --log - for this terminal)"
    ]
    text = log.read_text()
    assert "started: 1 services" in text
    assert "reloaded (requested by pid" in text and "nothing changed" in text
    # A clean exit leaves no service record behind (only the log and the lock).
    assert sorted(p.name for p in run.iterdir()) == ["svmgr.lock", "svmgr.log"]


def test_log_option(tree: ConfigTree, tmp_path: Path) -> None:
    tree.simple("web", FOREVER)
    run = tmp_path / "run"
    logfile = tmp_path / "mine.log"
    proc = spawn(tree, run, "--log", str(logfile), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sock = str(run / "control.sock")
    wait_until(lambda: ctl("--socket", sock, "is-active", "-q", "web").returncode == 0, "web up")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert (out, err) == (b"", b"")  # not a terminal: no note either
    assert "started: 1 services" in logfile.read_text()
    # --log - keeps the log on stderr, terminal or not.
    proc = spawn(tree, run, "--log", "-", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: ctl("--socket", sock, "is-active", "-q", "web").returncode == 0, "web up")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert b"started: 1 services" in err
    # A log that cannot be opened: one clear line, exit 1.
    proc = spawn(tree, run, "--log", str(tmp_path / "nodir" / "x.log"), stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert b"cannot open the log" in err and b"No such file or directory" in err
