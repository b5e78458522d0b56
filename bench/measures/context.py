"""What a measurement gets: the scale, the scratch directory, the backends
that can run here, and the shared start-until-up trial."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import procs
from bench.backends import ALL, Backend, Unavailable
from bench.common import Scratch, Tools, log
from bench.watch import ExecWatcher, running
from bench.workload import Workload


@dataclass
class Scale:
    repeats: int
    startup_n: list[int]
    dag_n: int
    control_calls: int
    loaded_n: int  # services loaded for control latency and memory
    restart_window: float
    shutdown_n: int
    spawn_n: int
    profile_n: int
    spawn_cost_rounds: int
    spawn_cost_big_mib: int


FULL = Scale(3, [50, 200, 1000], 200, 30, 200, 60.0, 200, 1000, 1000, 100, 2000)
QUICK = Scale(2, [50, 200], 100, 10, 200, 12.0, 200, 100, 1000, 20, 300)


@dataclass
class Context:
    scale: Scale
    scratch: Scratch
    tools: Tools
    available: dict[str, type[Backend]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    watch_method: str = "?"
    force_scan: bool = False

    def find_backends(self, only: list[str] | None = None) -> None:
        for cls in ALL:
            if only and cls.name not in only:
                continue
            try:
                cls(self.scratch, self.tools).check()
                self.available[cls.name] = cls
            except Unavailable as exc:
                self.unavailable[cls.name] = str(exc)
                log(f"{cls.name} unavailable: {exc}")

    def make(self, name: str, **kw: object) -> Backend:
        return self.available[name](self.scratch, self.tools, **kw)  # type: ignore[arg-type]

    def columns(self) -> list[str]:
        return [c.name for c in ALL if c.name in self.available or c.name in self.unavailable]

    def missing_note(self) -> list[str]:
        return [f"{n}: not measured: {why}" for n, why in self.unavailable.items()]


@dataclass
class Started:
    ok: bool
    t_run: float | None = None  # s from launch until the last service exec'd
    t_status: float | None = None  # s until the manager's status said all up
    cpu_run: float | None = None
    cpu_status: float | None = None
    why: str = ""


def start(
    ctx: Context,
    b: Backend,
    w: Workload,
    label: str,
    timeout: float = 180.0,
    argv: Callable[[Backend], list[str]] | None = None,
) -> Started:
    """Launch ``b`` with ``w`` and wait until every service runs, then until
    the manager's own status says so (polled from that moment on). The
    caller stops or kills the manager. ``argv`` replaces the manager's
    command line (it is given the prepared backend)."""
    b.prepare(w, label)
    with ExecWatcher(w.marker, force_scan=ctx.force_scan) as watcher:
        ctx.watch_method = watcher.method
        t0 = time.monotonic_ns()
        b.launch(argv(b) if argv else None)
        ts = watcher.wait(w.expect, timeout)
        if ts is None:
            return Started(
                False,
                why=f"only {watcher.count()}/{w.expect} running after {timeout:.0f}s: "
                + b.log_tail(3).replace("\n", " / "),
            )
        res = Started(True, t_run=(ts - t0) / 1e9, cpu_run=procs.cpu_seconds(b.manager_pids()))
        deadline = time.monotonic() + timeout
        while not b.all_up():
            if time.monotonic() > deadline:
                res.ok = False
                res.why = "status never said all up"
                return res
            time.sleep(0.01)
        res.t_status = (time.monotonic_ns() - t0) / 1e9
        res.cpu_status = procs.cpu_seconds(b.manager_pids())
    alive = len(running(w.marker))
    if alive != w.expect:
        res.ok = False
        res.why = f"{alive} of {w.expect} services alive after start"
    return res


def finish(b: Backend) -> None:
    """Kill whatever a trial left, and check nothing survives."""
    b.kill()
