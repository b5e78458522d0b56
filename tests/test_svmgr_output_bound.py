"""svmgr's memory is bounded whatever its services write (issue 13, point 5).

Before the bound, one service writing 100 MB without a newline grew svmgr
from 22 MB to 85 MB, ten of them to 665 MB: every read of 64 KiB became one
line in a ring of 1,000 lines."""

from __future__ import annotations

from pathlib import Path

from dynamod.svmgr.logbuf import MAX_LINE

# What ten services writing 100 MB each may add to svmgr's peak RSS
# (docs/engine.md, "Service output"): 10 rings of 256 KiB, the read buffers,
# and what the allocator keeps.
RSS_BOUND_KB = 8 * 1024
SIZE = 100 * 1024 * 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_ten_services_writing_100MB_without_a_newline_leave_svmgr_bounded(tree, svmgr, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    names = [f"flood{i}" for i in range(10)]
    for name in names:
        tree.simple(name, f"while [ ! -e {gate} ]; do sleep 0.02; done; head -c {SIZE} /dev/zero",
                    type="oneshot")
    m = svmgr()
    m.wait_for(lambda: all(m.status(n)["state"] == "starting" for n in names), what="all floods waiting")
    idle = _status_kb(m.pid, "VmRSS")
    gate.touch()
    for name in names:
        m.wait_state(name, "exited", timeout=120)
    peak = _status_kb(m.pid, "VmHWM")
    assert peak - idle < RSS_BOUND_KB, f"svmgr grew from {idle} kB to a peak of {peak} kB"
    # What the user sees: the output, cut into lines of the bound.
    # What the user sees: the output in lines of the bound, the last one
    # the remainder (a reply holds what fits in one frame: one such line).
    print(f"svmgr: idle {idle} kB, peak {peak} kB")
    last = m.request("GetLogs", {"name": "flood3", "lines": 1})["lines"]
    assert [x for _t, x in last] == ["\0" * (SIZE % MAX_LINE)]


def test_a_long_line_is_cut_at_48_KiB_and_nothing_is_lost(tree, svmgr) -> None:
    # 100,000 bytes and a newline, then a short line: two pieces of 48 KiB, the rest, the short one.
    tree.simple("long", "head -c 100000 /dev/zero | tr '\\0' a; echo; echo after; sleep 30")
    m = svmgr()
    m.wait_logs("long", "after")
    # The newest lines that fit in one reply frame.
    lines = [x for _t, x in m.request("GetLogs", {"name": "long", "lines": 3})["lines"]]
    assert lines == ["a" * MAX_LINE, "a" * (100000 - 2 * MAX_LINE), "after"]


def test_a_utf8_character_is_not_split_at_the_cut(tree, svmgr) -> None:
    # 'é' is two bytes: 24,576 of them are 49,152 bytes, one more crosses the bound.
    tree.simple("utf", "i=0; while [ $i -lt 24577 ]; do printf 'é'; i=$((i+1)); done; echo; echo end; sleep 30")
    m = svmgr()
    lines = m.wait_logs("utf", "end", timeout=60)
    assert lines[:2] == ["é" * 24576, "é"]
