"""7. Spawn cost per service, with and without the isolation plugin.

dynamod's start-up is timed at N and at N/10 services; the slope between the
two is the cost of one more service (spawn and bookkeeping), the intercept
the fixed cost (interpreter, imports, plugins, config). When it exists,
bench/spawn_cost.py's mechanism-level table is appended.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from bench import cgroupfs
from bench.backends import Dynamod
from bench.common import BENCH_DIR, Stat, log
from bench.measures.context import Context, finish, start
from bench.report import Table
from bench.workload import sleepers

KEY = "spawn"
PID_NS = '\n[namespace]\nenable = ["pid"]\n'
FAVOR = "favordynmods"  # marks the variant that needs the remount


def favor_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    try:
        with cgroupfs.favordynmods():
            return None
    except OSError as exc:
        return f"cannot remount cgroup2 with favordynmods: {exc}"


def config_problem(ctx: Context, extra_toml: str) -> str | None:
    """Why services with ``extra_toml`` cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    b = Dynamod(ctx.scratch, ctx.tools, extra_toml=extra_toml)
    b.prepare(sleepers(ctx.scratch.svc_sleep, 1), "config-check")
    p = subprocess.run(
        [ctx.tools.dynamodctl, "check", "--config-dir", str(b.dir / "etc")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if p.returncode != 0:
        lines = (p.stdout + p.stderr).strip().splitlines()
        return lines[0] if lines else f"dynamodctl check exited {p.returncode}"
    return None


def trial(ctx: Context, name: str, n: int, kw: dict[str, object]) -> float | None:
    kw = dict(kw)
    mount = cgroupfs.favordynmods() if kw.pop("favordynmods", False) else contextlib.nullcontext()
    with mount:
        b = ctx.make(name, **kw)
        try:
            res = start(ctx, b, sleepers(ctx.scratch.svc_sleep, n), f"spawn{n}")
        finally:
            finish(b)
    return res.t_run if res.ok else None


Variant = tuple[str, str, dict[str, object]]  # label, backend, backend options


def measure(ctx: Context, variants: list[Variant]) -> dict[str, tuple[Stat, Stat, Stat]]:
    """Per variant: (s until N services run, ms per service, fixed ms). Round
    by round, every variant once per round at N/10 and at N."""
    big = ctx.scale.spawn_n
    small = max(1, big // 10)
    out = {label: (Stat("s"), Stat("ms"), Stat("ms")) for label, _, _ in variants}
    for _label, name, kw in variants:
        trial(ctx, name, small, kw)  # warm-up
    for _ in range(ctx.scale.repeats):
        for label, name, kw in variants:
            total, per, fixed = out[label]
            a, b = trial(ctx, name, small, kw), trial(ctx, name, big, kw)
            if a is None or b is None:
                for st in (total, per, fixed):
                    st.add(None, "a trial failed")
                continue
            slope = (b - a) / (big - small)
            log(
                f"spawn {label}: {small}: {a:.3f}s {big}: {b:.3f}s -> {slope * 1000:.2f} ms/service"
            )
            total.add(b)
            per.add(slope * 1000)
            fixed.add((a - slope * small) * 1000)
    return out


def run(ctx: Context) -> Table:
    big = ctx.scale.spawn_n
    cols = [c for c in ("dynamod", "floor") if c in ctx.available]
    t = Table(KEY, f"7. Spawn cost per service (start-up at {big} and {big // 10} services)", cols)
    if "dynamod" not in ctx.available:
        t.notes.append("dynamod unavailable")
        return t
    here = "with" if cgroupfs.has_favordynmods() else "without"
    other = "shell" if here == "with" else "hop"  # auto picks the other one here
    candidates: list[tuple[Variant, str]] = [
        (("no plugins (`--no-plugins`)", "dynamod", {"plugins": False}), ""),
        ((f"plugins installed (a cgroup per service; this machine's cgroup2, {here} favordynmods)",
          "dynamod", {}), ""),
        (("plugins installed, cgroup2 with favordynmods (as dynamod-init mounts it)", "dynamod",
          {"favordynmods": True}), FAVOR),
        # the other placement on this machine's mount, forced
        ((f"plugins installed, this machine's cgroup2, `DYNAMOD_CGROUP_JOIN={other}`", "dynamod",
          {"env": {"DYNAMOD_CGROUP_JOIN": other}}), ""),
        (('isolation + `[namespace] enable = ["pid"]`', "dynamod", {"extra_toml": PID_NS}), PID_NS),
    ]
    if here == "with":  # the machine's own mount already is the PID 1 case
        candidates = [c for c in candidates if c[1] != FAVOR]
    problems = {v[0]: favor_problem() if extra == FAVOR else config_problem(ctx, extra) if extra
                else None for v, extra in candidates}
    variants = [v for v, _ in candidates if not problems[v[0]]]
    if "floor" in ctx.available:
        variants.append(("floor", "floor", {}))
    stats = measure(ctx, variants)
    for (label, _, _), _extra in candidates:
        rows = [
            t.row(f"{label}: {big} running"),
            t.row(f"{label}: per service"),
            t.row(f"{label}: fixed start-up"),
        ]
        for i, row in enumerate(rows):
            row.cells["dynamod"] = stats[label][i] if label in stats else f"n/a: {problems[label]}"
            if "floor" in stats:
                row.cells["floor"] = stats["floor"][i]
    t.notes += [
        f"per service: (start-up time at {big} - at {big // 10}) / {big - big // 10}, from launching the "
        "manager until the last service has exec'd; fixed start-up: the intercept",
        "as root the isolation plugin puts every service in its own cgroup; unprivileged it does "
        "nothing. How: where cgroup2 is mounted with favordynmods (dynamod-init mounts it so), "
        "svmgr moves itself into the cgroup for the fork and back (no extra exec); elsewhere a "
        "shell step joins the cgroup before exec'ing the service (docs/isolation.md)",
        "the favordynmods row remounts this machine's cgroup2 with favordynmods around each of "
        "its trials and puts it back as it was (bench/cgroupfs.py)",
    ]
    script = BENCH_DIR / "spawn_cost.py"
    if script.exists():
        args = [
            "--rounds",
            str(ctx.scale.spawn_cost_rounds),
            "--big-mib",
            str(ctx.scale.spawn_cost_big_mib),
        ]
        log(f"running bench/spawn_cost.py {' '.join(args)}")
        p = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=900
        )
        if p.returncode == 0:
            t.appendix = (
                "bench/spawn_cost.py (the isolation engineer's table of each mechanism):\n\n"
                + p.stdout
            )
        else:
            t.notes.append(
                f"bench/spawn_cost.py failed (exit {p.returncode}): {p.stderr.strip()[-300:]}"
            )
    else:
        t.notes.append("bench/spawn_cost.py is not there: no mechanism-level table")
    return t
