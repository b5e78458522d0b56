"""dynamod-logd with a real svmgr: records, the handoff of pipes, restarts
of logd, storage (docs/logd.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dynamod.logd.record import ERR, INFO, MAX_LINE, WARNING, boot_id
from dynamod.logd.testing import add_logd, all_records, messages, query, wait_logd


def _up(tree, svmgr, tmp_path: Path, **kw):
    """dynamod-logd (``kw`` for add_logd) and svmgr on ``tree``; waits for
    logd unless it is not enabled."""
    rt, store = tmp_path / "rt", tmp_path / "log"
    add_logd(tree, rt, store, **kw)
    m = svmgr(runtime_dir=rt)
    if kw.get("enabled", True):
        wait_logd(rt)
    return m, rt, store


def _ctl(m, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dynamod.ctl.main", "--socket", m.socket, *args],
                          capture_output=True, text=True, timeout=60)


def test_records_carry_stream_priority_pid_boot_and_both_clocks(tree, svmgr, tmp_path: Path) -> None:
    tree.service("talker", """
        [service]
        name = "talker"
        exec = ["/bin/sh", "-c", "sleep 0.5; echo plain; echo '<4>careful' >&2; echo oops >&2; echo '<7>dbg'; printf 'bin\\\\000ary\\\\377\\\\n'; exec sleep 60"]
        """)
    m, rt, _store = _up(tree, svmgr, tmp_path)
    m.wait_for(lambda: len(messages(rt, "talker")) >= 5, what="talker's five lines")
    before = time.time()
    recs = [r for r in all_records(rt, ["talker"]) if r["service"] == "talker"]
    pid = m.status("talker")["pid"]
    got = {(r["message"], r["stream"], r["priority"]) for r in recs}
    assert got == {(b"plain", "stdout", INFO), (b"careful", "stderr", WARNING), (b"oops", "stderr", ERR),
                   (b"dbg", "stdout", 7), (b"bin\0ary\xff", "stdout", INFO)}
    assert {r["pid"] for r in recs} == {pid}
    assert {r["boot"] for r in recs} == {boot_id()}
    for r in recs:
        assert before - 30 < r["time"] <= before
        assert 0 < r["monotonic"] <= time.monotonic()
    # The manager's life-cycle records of the service, under its own name.
    life = [r["message"] for r in all_records(rt, ["talker"]) if r["service"] == "dynamod-svmgr"]
    assert b"waiting-ready -> running" in life
    # What the user sees: dynamodctl logs reads logd.
    out = _ctl(m, "logs", "talker", "-n", "5")
    assert out.returncode == 0, out.stderr
    # Two pipes: the order between stdout and stderr is the order logd read them in.
    assert {x.split(" ", 2)[2] for x in out.stdout.splitlines()} == {
        "plain", "careful", "oops", "dbg", "bin\0ary\ufffd"}


def test_output_written_before_logd_runs_is_handed_over(tree, svmgr, tmp_path: Path) -> None:
    tree.simple("early", "echo one; echo '<3>two' >&2; while [ ! -e go ]; do sleep 0.02; done; echo three; exec sleep 60",
                workdir=str(tmp_path))
    m, rt, _store = _up(tree, svmgr, tmp_path, enabled=False)
    m.wait_logs("early", "two")
    m.request("StartService", {"name": "dynamod-logd"})
    wait_logd(rt)
    (tmp_path / "go").touch()
    m.wait_for(lambda: b"three" in messages(rt, "early"), what="the line after logd came")
    recs = [r for r in all_records(rt, ["early"]) if r["service"] == "early"]
    assert [(r["message"], r["stream"], r["priority"]) for r in recs] == [
        (b"one", "stdout", INFO), (b"two", "stderr", ERR), (b"three", "stdout", INFO)]
    # svmgr's records from before logd ran came along.
    life = [r["message"] for r in all_records(rt, ["early"]) if r["service"] == "dynamod-svmgr"]
    assert b"pending -> starting" in life


NUMBERS = "i=0; while [ $i -lt {n} ]; do echo n$i; i=$((i+1)); {pause} done; exec sleep 600"


def test_logd_killed_ten_times_loses_and_repeats_no_line(tree, svmgr, tmp_path: Path) -> None:
    n = 20000
    tree.simple("counter", NUMBERS.format(n=n, pause="[ $((i % 50)) -eq 0 ] && sleep 0.01;"))
    m, rt, _store = _up(tree, svmgr, tmp_path)
    import random

    rnd = random.Random(12)
    for _ in range(10):
        time.sleep(rnd.uniform(0.05, 0.3))
        pid = m.status("dynamod-logd")["pid"]
        os.kill(pid, signal.SIGKILL)
        m.wait_for(lambda pid=pid: m.status("dynamod-logd")["pid"] not in (None, pid)
                   and m.status("dynamod-logd")["state"] == "running", what="logd restarted")
        wait_logd(rt)
    wait_logd(rt)
    m.wait_for(lambda: f"n{n - 1}".encode() in messages(rt, "counter")[-3:], timeout=120,
               what="the last number")
    got = messages(rt, "counter")
    assert got == [f"n{i}".encode() for i in range(n)]


def test_a_partial_line_is_a_record_after_a_quiet_moment_and_long_lines_split(tree, svmgr, tmp_path: Path) -> None:
    tree.simple("partial", "sleep 0.5; printf 'no newline'; sleep 1; head -c 100000 /dev/zero | tr '\\0' x; echo; exec sleep 60")
    m, rt, _store = _up(tree, svmgr, tmp_path)
    m.wait_for(lambda: len(messages(rt, "partial")) >= 4, what="four records")
    assert messages(rt, "partial") == [b"no newline", b"x" * MAX_LINE, b"x" * MAX_LINE,
                                       b"x" * (100000 - 2 * MAX_LINE)]
    # Two 48 KiB lines do not fit in one reply: dynamodctl asks for older pages.
    out = _ctl(m, "logs", "partial", "-n", "4")
    assert [len(x.split(" ", 2)[2]) for x in out.stdout.splitlines()] == [
        len("no newline"), MAX_LINE, MAX_LINE, 100000 - 2 * MAX_LINE]


def test_storage_rotates_within_its_limits_and_a_restarted_logd_reads_the_old_files(tree, svmgr, tmp_path: Path) -> None:
    tree.simple("chatty", NUMBERS.format(n=3000, pause=""))
    m, rt, store = _up(tree, svmgr, tmp_path, config='max-file-size = "16K"\nmax-files = 4\n[ring]\nrecords = 100')
    m.wait_for(lambda: b"n2999" in messages(rt, "chatty")[-1:], what="the last line")
    files = sorted(store.iterdir())
    assert 2 <= len(files) <= 4, files
    assert all(f.stat().st_size <= 16 * 1024 for f in files)
    kept = messages(rt, "chatty")
    assert kept and kept[-1] == b"n2999"
    first = int(kept[0][1:])
    assert kept == [f"n{i}".encode() for i in range(first, 3000)] and first > 0  # the oldest were rotated out
    # A new logd (its ring is empty) answers from the files.
    m.request("StopService", {"name": "dynamod-logd"})
    m.request("StartService", {"name": "dynamod-logd"})
    wait_logd(rt)
    assert messages(rt, "chatty") == kept
    assert query(rt, names=["chatty"], lines=2)["records"][-1]["message"] == b"n2999"


def test_dynamodctl_logs_reads_logd_follows_it_and_names_an_unknown_service(tree, svmgr, tmp_path: Path) -> None:
    tree.simple("ticker", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done")
    m, rt, _store = _up(tree, svmgr, tmp_path)
    m.wait_for(lambda: len(messages(rt, "ticker")) >= 3, what="three ticks")
    out = _ctl(m, "logs", "ticker", "-n", "2")
    assert out.returncode == 0, out.stderr
    assert [x.split(" ", 2)[2].split(" ")[0] for x in out.stdout.splitlines()] == ["tick", "tick"]
    follow = subprocess.Popen([sys.executable, "-m", "dynamod.ctl.main", "--socket", m.socket, "logs", "ticker",
                               "-n", "0", "-f"], stdout=subprocess.PIPE, text=True)
    try:
        seen = [follow.stdout.readline() for _ in range(5)]
    finally:
        follow.send_signal(signal.SIGINT)
        follow.wait(10)
    nums = [int(x.split()[-1]) for x in seen]
    assert nums == list(range(nums[0], nums[0] + 5))  # each once, in order
    bad = _ctl(m, "logs", "no-such-thing")
    assert bad.returncode == 4 and "no-such-thing" in bad.stderr


def test_a_full_disk_keeps_logd_answering_from_its_ring_and_says_what_it_could_not_store(
        tree, svmgr, tmp_path: Path) -> None:
    # The storage directory is a 64 KiB tmpfs in logd's own mount namespace.
    store = tmp_path / "log"
    store.mkdir()
    wrapper = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               f"mount -t tmpfs -o size=64k tmpfs {store} && exec \\\"$0\\\" \\\"$@\\\""]
    tree.simple("filler", NUMBERS.format(n=20000, pause=""))
    m, rt, _store = _up(tree, svmgr, tmp_path, wrapper=wrapper,
                        config='max-file-size = "16K"\nkeep-free = 0\n[ring]\nrecords = 50000')
    m.wait_for(lambda: b"n19999" in messages(rt, "filler")[-1:], what="the last line", timeout=60)
    assert messages(rt, "filler") == [f"n{i}".encode() for i in range(20000)]
    assert query(rt, lines=0)["unstored"] > 0
    out = _ctl(m, "logs", "filler", "-n", "1")
    assert out.returncode == 0 and out.stdout.endswith(" n19999\n")
    assert "could not store" in out.stderr
    assert not list(store.iterdir())  # the tmpfs was logd's alone


def test_status_shows_the_last_lines_from_logd(tree, svmgr, tmp_path: Path) -> None:
    tree.simple("late", "sleep 1; echo written after logd came; exec sleep 60")
    m, rt, _store = _up(tree, svmgr, tmp_path)
    m.wait_for(lambda: b"written after logd came" in messages(rt, "late"), what="the line")
    out = _ctl(m, "status", "late")
    assert out.returncode == 0, out.stderr
    assert "written after logd came" in out.stdout
    assert "[dynamod] waiting-ready -> running" in out.stdout


def test_when_logd_never_comes_svmgr_reads_on_and_no_service_stays_blocked(tree, svmgr, tmp_path: Path) -> None:
    # A dynamod-logd that never opens its socket: svmgr holds output back
    # (256 KiB per pipe) for DYNAMOD_LOGD_WAIT, then reads on.
    tree.simple("dynamod-logd", "exec sleep 600")
    done = tmp_path / "done"
    tree.simple("big", f"head -c 1000000 /dev/zero | tr '\\0' 'y' | fold -w 99; touch {done}; exec sleep 600")
    m = svmgr(env={**os.environ, "DYNAMOD_LOGD_WAIT": "1"})
    m.wait_for(done.exists, what="the writer got through its megabyte", timeout=30)
    assert "dynamod-logd did not come within 1s" in m.log()
    assert m.logs("big")[-1] == "y" * 99  # in svmgr's ring
