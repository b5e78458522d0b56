"""dynamodctl: the whole-process wall time of every command, as a user or a
script runs it, against a running dynamod-svmgr with N services.

Like hyperfine: each command line runs ``calls`` times after 3 warm-ups,
output through a pipe; the median with [min-max] is the figure. The
commands take turns (one call of each per round), so that noise from the
rest of the machine is shared out. The
interpreter's own start-up (``python -c pass``) is the reference row: no
Python command can be faster. dynamodctl runs with bytecode caches, as an
installed package has them.
"""

from __future__ import annotations

from bench.backends import Dynamod
from bench.common import Stat, log
from bench.measures.context import Context, finish, start
from bench.measures.control import run_once
from bench.report import Table, fmt_stat
from bench.workload import sleepers

KEY = "ctl"
WARMUP = 3  # rounds not counted
BUDGET_MS = {"hot": 25, "other": 40}  # issue 14: status/list/is-active, every other command


def run(ctx: Context) -> Table:
    n, calls = ctx.scale.loaded_n, ctx.scale.control_calls
    t = Table(
        KEY,
        f"8. dynamodctl: whole-process time of every command ({n} services loaded, {calls} calls)",
        ["dynamod"],
    )
    if "dynamod" not in ctx.available:
        t.row("every command").cells["dynamod"] = "n/a"
        return t
    b = ctx.make("dynamod")
    assert isinstance(b, Dynamod)
    env = ctx.scratch.env()
    try:
        res = start(ctx, b, sleepers(ctx.scratch.svc_sleep, n), "ctl")
        if not res.ok:
            t.row("every command").stat("dynamod", "ms").add(None, res.why)
            return t
        ctl = [ctx.tools.dynamodctl, "--socket", str(b.socket)]
        svc, other = f"s{n // 2:04d}", f"s{n // 2 + 1:04d}"
        cases: list[tuple[str, list[str], int]] = [
            ("`python -c pass` (reference)", [ctx.tools.python, "-c", "pass"], 0),
            ("`status NAME`", [*ctl, "status", svc], 0),
            ("`list`", [*ctl, "list"], 0),
            ("`list --json`", [*ctl, "list", "--json"], 0),
            ("`is-active NAME`", [*ctl, "is-active", svc], 0),
            ("`tree`", [*ctl, "tree"], 0),
            ("`logs NAME -n 10`", [*ctl, "logs", svc, "-n", "10"], 0),
            ("`start NAME` (already running)", [*ctl, "start", svc], 0),
            ("`restart NAME`", [*ctl, "restart", svc], 0),
            ("`reload` (no changes)", [*ctl, "reload"], 0),
            ("`--version`", [*ctl, "--version"], 0),
            ("`--help`", [*ctl, "--help"], 0),
            ("`status --help`", [*ctl, "status", "--help"], 0),
            ("`completion bash`", [*ctl, "completion", "bash"], 0),
            ("TAB: `__complete bash -- status s00`", [*ctl, "__complete", "bash", "--", "status", "s00"], 0),
            ("unknown command (exit 2)", [*ctl, "shwo"], 2),
            ("`check --config-dir DIR`", [ctx.tools.dynamodctl, "check", "--config-dir", str(b.dir / "etc")], 0),
            ("`plugins`", [ctx.tools.dynamodctl, "plugins"], 0),
        ]  # fmt: skip
        cases += [
            ("`show NAME`", [*ctl, "show", svc], 0),
            ("`show NAME -p main_pid --value`", [*ctl, "show", svc, "-p", "main_pid", "--value"], 0),
            ("`is-enabled NAME`", [*ctl, "is-enabled", svc], 0),
            ("`is-failed NAME` (exit 1)", [*ctl, "is-failed", svc], 1),
            ("`cat NAME`", [*ctl, "cat", svc], 0),
            ("`list --state running 's00*'`", [*ctl, "list", "--state", "running", "s00*"], 0),
            ("`kill -s CONT NAME`", [*ctl, "kill", "-s", "CONT", svc], 0),
            ("`reset-failed`", [*ctl, "reset-failed"], 0),
            ("`analyze`", [*ctl, "analyze"], 0),
            ("`analyze blame`", [*ctl, "analyze", "blame"], 0),
            ("`analyze critical-chain NAME`", [*ctl, "analyze", "critical-chain", svc], 0),
            ("`analyze plot`", [*ctl, "analyze", "plot"], 0),
            ("`analyze dot`", [*ctl, "analyze", "dot"], 0),
        ]  # fmt: skip
        # mask, unmask, disable and enable take turns on one service, each
        # writing its file; a round ends with it enabled and unmasked again.
        cases += [
            ("`mask NAME`", [*ctl, "mask", svc], 0),
            ("`unmask NAME`", [*ctl, "unmask", svc], 0),
            ("`disable NAME`", [*ctl, "disable", svc], 0),
            ("`enable NAME`", [*ctl, "enable", svc], 0),
        ]
        # `stop` and `start` of one more service, in turn: each does its work.
        cases += [
            ("`stop NAME`", [*ctl, "stop", other], 0),
            ("`start NAME` (stopped)", [*ctl, "start", other], 0),
        ]
        rows = [t.row(label) for label, _, _ in cases]
        # Round by round, every command once per round: a busy moment of the
        # machine hits all commands, not one command's block of calls.
        for i in range(calls + WARMUP):
            for row, (_, argv, expect) in zip(rows, cases, strict=True):
                dt, why = run_once(argv, env, expect)
                if dt is None or i >= WARMUP:
                    row.stat("dynamod", "ms").add(dt, why)
        for r in t.rows:
            cell = r.cells.get("dynamod")
            log(f"ctl {r.label}: {fmt_stat(cell) if isinstance(cell, Stat) else cell}")
    finally:
        finish(b)
    t.notes += [
        "each command line run as a user's shell would, output through a pipe; round by round "
        "(every command once per round) after three warm-up rounds; the median and [min-max]",
        "`--socket` names the manager's socket on every line but check and plugins; "
        "check reads the N services' files and loads the daemon-side plugins (as svmgr does); "
        "plugins loads both plugin groups",
        "`stop` and `start` take turns on one more service, so both wait for the manager to "
        "stop or start it; `restart` does both",
        f"budget (issue 14): status, list, is-active {BUDGET_MS['hot']} ms; every other command "
        f"{BUDGET_MS['other']} ms",
    ]
    return t
