"""Ingest throughput of dynamod-logd (docs/logd.md, "Measured").

One service writes N lines of 64 bytes as fast as it can (``seq``); the time
from the service's start until logd has stored the last line gives lines/s
and MB/s, with logd's CPU time and peak RSS. The floor is a bare ``cat``
from a pipe into a file, the same lines. Run as root from the repository:
``.venv/bin/python -m bench.logd_ingest [N]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dynamod.logd.testing import add_logd, query, wait_logd
from dynamod.testing import ConfigTree, Svmgr, wait_until

FMT = "line %09g " + "x" * 48  # 64 bytes with the newline


def floor(n: int, work: Path) -> float:
    t = time.perf_counter()
    subprocess.run(f"seq -f '{FMT}' 1 {n} | cat > {work}/floor.txt", shell=True, check=True)
    return time.perf_counter() - t


def cpu_and_hwm(pid: int) -> tuple[float, int]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = next(int(x.split()[1]) for x in Path(f"/proc/{pid}/status").read_text().splitlines()
               if x.startswith("VmHWM:"))
    return cpu, hwm


def logd_run(n: int, work: Path) -> tuple[float, float, int]:
    tree = ConfigTree(work / "etc")
    rt = work / "rt"
    add_logd(tree, rt, work / "log", config='max-total-size = "4G"\nkeep-free = 0')
    gate = work / "go"
    tree.simple("writer", f"while [ ! -e {gate} ]; do sleep 0.01; done; seq -f '{FMT}' 1 {n}; exec sleep 600")
    with Svmgr(tree.root, rt) as m:
        wait_logd(rt)
        pid = m.status("dynamod-logd")["pid"]
        cpu0, _ = cpu_and_hwm(pid)
        last = f"line {n:09d}".encode()
        t = time.perf_counter()
        gate.touch()

        def done() -> bool:
            recs = query(rt, names=["writer"], lines=1)["records"]
            return bool(recs) and recs[-1]["message"].startswith(last)

        wait_until(done, "the last line stored", 600, interval=0.01)
        elapsed = time.perf_counter() - t
        cpu1, hwm = cpu_and_hwm(pid)
    return elapsed, cpu1 - cpu0, hwm


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="logd-bench-") as d:
        work = Path(d)
        f = floor(n, work)
        elapsed, cpu, hwm = logd_run(n, work)
    mb = n * 64 / 1e6
    print(f"logd ingest, one writer, {n} lines of 64 bytes ({mb:.0f} MB)")
    print(f"  floor (seq | cat > file): {f:.2f} s  {n / f:,.0f} lines/s  {mb / f:.1f} MB/s")
    print(f"  dynamod-logd:             {elapsed:.2f} s  {n / elapsed:,.0f} lines/s  {mb / elapsed:.1f} MB/s"
          f"  ({100 * f / elapsed:.0f}% of the floor)")
    print(f"  logd CPU {cpu:.2f} s ({100 * cpu / elapsed:.0f}% of a core), peak RSS {hwm / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
