"""dynamodctl against a real dynamod-svmgr: real socket, real processes.

The CLI always runs as a subprocess, through its real entry point
(``python -m dynamod.ctl.main``) unless a test says otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dynamod.testing import FOREVER, ConfigTree, Svmgr, ctl, ctl_env, one_error_line


@pytest.fixture
def demo(tree: ConfigTree, svmgr) -> Svmgr:
    """base <- app (requires), idle (not enabled), once (oneshot)."""
    tree.simple("base", "echo base up; " + FOREVER, description="The base service")
    tree.simple(
        "app",
        "echo app line 1; echo app line 2; echo app line 3; " + FOREVER,
        description="The app",
        extra='[dependencies]\nrequires = ["base"]\n',
    )
    tree.simple("idle", FOREVER, enabled=False, description="Started by hand")
    tree.simple("once", "echo done", type="oneshot")
    # No plugins: their extra status fields (cgroup CPU time...) change from
    # one call to the next, and these tests compare outputs exactly.
    mgr = svmgr(args=["--no-plugins"])
    mgr.wait_state("app", "running")
    mgr.wait_state("once", "exited")
    mgr.wait_for(
        lambda: "app line 3" in str(mgr.request("GetLogs", {"name": "app"})), what="app's log"
    )
    return mgr


# --- read-only commands -------------------------------------------------------


def test_list_human_and_json(demo: Svmgr) -> None:
    r = ctl("--socket", demo.socket, "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "PID", "SINCE", "RESTARTS", "SUPERVISOR", "REASON"]
    rows = {line.split()[0]: line.split() for line in lines[1:5]}
    assert rows["app"][1] == "running" and rows["app"][2] == str(demo.status("app")["pid"])
    assert rows["idle"][1:3] == ["stopped", "-"]
    assert rows["once"][1] == "exited"
    assert rows["app"][5] == "root"
    # Columns line up: every row's STATE starts where the header's does.
    col = lines[0].index("STATE")
    assert all(line[col - 2 : col] == "  " and line[col] != " " for line in lines[1:5])
    assert "4 services: 1 exited, 2 running, 1 stopped" in r.stdout
    assert r.stderr == ""

    r = ctl("list", "--json", "--socket", demo.socket)
    assert r.returncode == 0
    services = json.loads(r.stdout)
    assert [s["name"] for s in services] == ["app", "base", "idle", "once"]
    assert {s["name"]: s["state"] for s in services} == {
        "app": "running",
        "base": "running",
        "idle": "stopped",
        "once": "exited",
    }
    assert services[0]["description"] == "The app"


def test_status_human(demo: Svmgr) -> None:
    r = ctl("--socket", demo.socket, "status", "app")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "● app - The app"
    fields = {
        k.strip(): v.strip()
        for k, _, v in (line.partition(": ") for line in lines[1:] if ": " in line)
    }
    assert fields["State"].startswith("running since ")
    assert fields["PID"] == str(demo.status("app")["pid"])
    assert fields["Type"] == "simple, readiness none"
    assert fields["Supervisor"] == "root"
    assert fields["Restarts"] == "0 (budget 5 in 1m, policy permanent)"
    assert fields["Requires"] == "base"
    assert fields["Activation"] == "explicit, enabled at boot"
    # The last log lines come after a blank line.
    assert lines[-3:][0].endswith(" app line 1") and lines[-1].endswith(" app line 3")
    assert "" in lines

    # A finished oneshot counts as up.
    r = ctl("--socket", demo.socket, "status", "once")
    assert r.returncode == 0
    assert "Last exit: exited 0" in r.stdout


def test_status_exit_codes(demo: Svmgr) -> None:
    r = ctl("--socket", demo.socket, "status", "idle")
    assert r.returncode == 3, r.stderr
    assert "State: stopped" in r.stdout and r.stderr == ""

    # --json is a query: exit 0 whatever the state; one map per line.
    r = ctl("--socket", demo.socket, "status", "--json", "idle", "app")
    assert r.returncode == 0
    maps = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(m["name"], m["state"]) for m in maps] == [("idle", "stopped"), ("app", "running")]
    assert maps[1]["requires"] == ["base"] and maps[1]["pid"] == demo.status("app")["pid"]

    r = ctl("--socket", demo.socket, "status", "nosuch")
    assert r.returncode == 4
    assert one_error_line(r) == "dynamodctl: no such service: nosuch"
    assert r.stdout == ""

    # Several names: every known one is shown; the worst code wins.
    r = ctl("--socket", demo.socket, "status", "app", "nosuch", "idle")
    assert r.returncode == 4
    assert "● app - The app" in r.stdout and "● idle - Started by hand" in r.stdout
    assert one_error_line(r) == "dynamodctl: no such service: nosuch"


def test_is_active(demo: Svmgr) -> None:
    r = ctl("--socket", demo.socket, "is-active", "app", "once")
    assert (r.returncode, r.stdout) == (0, "running\nexited\n")
    r = ctl("--socket", demo.socket, "is-active", "app", "idle")
    assert (r.returncode, r.stdout) == (3, "running\nstopped\n")
    r = ctl("--socket", demo.socket, "is-active", "-q", "idle")
    assert (r.returncode, r.stdout, r.stderr) == (3, "", "")
    r = ctl("--socket", demo.socket, "is-active", "--quiet", "nosuch")
    assert (r.returncode, r.stdout, r.stderr) == (4, "", "")


def test_tree_human_and_json(demo: Svmgr) -> None:
    r = ctl("--socket", demo.socket, "tree")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "root [one-for-one]: running, restarts 0, budget 5 in 1m per child"
    body = [line[3:] for line in lines[1:]]
    assert all(line[:3] in ("├─ ", "└─ ") for line in lines[1:]) and lines[-1].startswith("└─ ")
    assert {"base: running", "app: running", "idle: stopped", "once: exited"} == set(body)
    r = ctl("--socket", demo.socket, "tree", "--json")
    root = json.loads(r.stdout)
    assert root["name"] == "root" and root["kind"] == "supervisor"
    assert {c["name"] for c in root["children"]} == {"app", "base", "idle", "once"}


def test_logs(demo: Svmgr) -> None:
    r = ctl("--socket", demo.socket, "logs", "app", "-n", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" app line 2") and lines[1].endswith(" app line 3")
    assert lines[0][:4].isdigit() and lines[0][19] == "."  # 2026-11-22 10:39:10.968
    r = ctl("--socket", demo.socket, "logs", "app")
    assert len(r.stdout.splitlines()) == 3
    r = ctl("--socket", demo.socket, "logs", "nosuch")
    assert r.returncode == 4 and one_error_line(r) == "dynamodctl: no such service: nosuch"


def test_logs_follow(tree: ConfigTree, svmgr) -> None:
    tree.simple(
        "ticker", "i=0; trap 'exit 0' TERM; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done"
    )
    mgr = svmgr()
    mgr.wait_state("ticker", "running")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dynamod.ctl.main",
            "--socket",
            mgr.socket,
            "logs",
            "-f",
            "-n",
            "1",
            "ticker",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ctl_env(),
    )
    try:
        seen = [proc.stdout.readline() for _ in range(6)]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    ticks = [int(line.split()[-1]) for line in seen]
    # Consecutive: nothing lost or printed twice between polls.
    assert ticks == list(range(ticks[0], ticks[0] + 6)), seen
    assert proc.returncode == 130 and "Traceback" not in err


def test_many_names_at_once(demo: Svmgr) -> None:
    """Thousands of names: the answers are read while requests go out
    (svmgr drops a client that leaves over 1 MB of answers unread)."""
    r = ctl("--socket", demo.socket, "is-active", *["app", "once"] * 5000)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == "running\nexited\n" * 5000
    r = ctl("--socket", demo.socket, "status", *["app"] * 1500, "nosuch")
    assert r.returncode == 4 and one_error_line(r) == "dynamodctl: no such service: nosuch"
    assert r.stdout.count("● app - The app\n") == 1500 and r.stdout.count(" app line 3\n") == 1500
    r = ctl("--socket", demo.socket, "start", *["app"] * 3000)
    assert (r.returncode, r.stderr) == (0, "")
    assert len(r.stdout.splitlines()) == 3000 and r.stdout.startswith("started app (running, pid ")


# --- one parser for every command -------------------------------------------


# Imports no command may pay for: typer/click/pydantic cost 100+ ms, the
# rest are what the parser and the socket client were written to avoid
# (socket.py: enum and selectors; typing: re).
HEAVY = ("typer", "click", "pydantic", "pluggy", "importlib.metadata", "asyncio",
         "dynamod.ipc.schema", "dataclasses", "inspect", "typing", "re", "enum",
         "socket", "selectors", "textwrap", "shutil", "difflib")  # fmt: skip


def imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dynamod.ctl.main", *args],
        capture_output=True,
        text=True,
        env=ctl_env(DYNAMOD_PLUGINS_AUTOLOAD="1"),
        timeout=60,
    )
    names = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if "|" in line}
    return r, names


def test_no_command_imports_heavy_modules(demo: Svmgr) -> None:
    sock = demo.socket
    for args in (
        ["status", "app"],
        ["list"],
        ["is-active", "app"],
        ["tree"],
        ["logs", "app", "-n", "1"],
        ["start", "app"],
        ["stop", "idle"],
        ["reload"],
        ["--help"],
        ["status", "--help"],
        ["shutdown", "--help"],
        ["--version"],
        ["completion", "bash"],
        ["__complete", "bash", "--", "status", "a"],
        ["bogus"],
    ):
        r, names = imported("--socket", sock, *args)
        assert r.returncode in (0, 2), (args, r.stderr[-500:])
        assert "dynamod.ctl.verbs" in names
        assert not names.intersection(HEAVY), (args, names.intersection(HEAVY))
    # json only where --json asks for it.
    assert "json" not in imported("--socket", sock, "list")[1]
    assert "json" in imported("--socket", sock, "list", "--json")[1]


def test_options_anywhere_and_last_socket_wins(demo: Svmgr) -> None:
    sock = demo.socket
    missing = str(Path(sock).parent / "missing.sock")
    base = ctl("--socket", sock, "status", "app")
    for args in (
        ["status", "app", "--socket", sock],
        [f"--socket={sock}", "status", "app"],
        ["--socket", missing, "status", "app", f"--socket={sock}"],
        ["status", "--socket", missing, "app", "--socket", sock],
    ):
        r = ctl(*args)
        assert (r.returncode, r.stderr) == (0, ""), args
        # The same service, the same lines (the age may tick between runs).
        assert r.stdout.splitlines()[0] == base.stdout.splitlines()[0], args
    r = ctl("--socket", missing, "list")
    assert r.returncode == 5 and missing in one_error_line(r)
    # Short options cluster and take attached values, as with click.
    r = ctl("--socket", sock, "logs", "app", "-n2")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2
    r = ctl("--socket", sock, "is-active", "-qq", "app")
    assert (r.returncode, r.stdout) == (0, "")
    # `--` ends the options: "--json" is then a service name.
    r = ctl("--socket", sock, "status", "--", "--json")
    assert r.returncode == 4 and one_error_line(r) == "dynamodctl: no such service: --json"


# --- connecting ---------------------------------------------------------------


def test_cannot_connect_exit_5(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.sock")
    for args in (["status", "web"], ["list"], ["start", "web"], ["tree"], ["reload"]):
        r = ctl("--socket", missing, *args)
        assert r.returncode == 5, (args, r.stderr)
        line = one_error_line(r)
        assert line.startswith(
            f"dynamodctl: cannot connect to {missing}: No such file or directory"
        )
        assert "--socket" in line and "DYNAMOD_SOCKET" in line
    # The environment variable names the socket too.
    r = ctl("list", env=ctl_env(DYNAMOD_SOCKET=missing))
    assert r.returncode == 5 and missing in one_error_line(r)


def test_socket_from_environment(demo: Svmgr) -> None:
    r = ctl("is-active", "app", env=ctl_env(DYNAMOD_SOCKET=demo.socket))
    assert (r.returncode, r.stdout) == (0, "running\n")
    r = ctl("tree", env=ctl_env(DYNAMOD_SOCKET=demo.socket))
    assert r.returncode == 0 and r.stdout.startswith("root ")


# --- commands that change things ----------------------------------------------


def test_start_restart_stop(demo: Svmgr) -> None:
    r = ctl("--socket", demo.socket, "start", "idle")
    assert r.returncode == 0, r.stderr
    pid = demo.status("idle")["pid"]
    assert r.stdout == f"started idle (running, pid {pid})\n"
    r = ctl("--socket", demo.socket, "restart", "idle")
    assert r.returncode == 0, r.stderr
    new_pid = demo.status("idle")["pid"]
    assert new_pid != pid and r.stdout == f"restarted idle (running, pid {new_pid})\n"
    r = ctl("--socket", demo.socket, "stop", "idle")
    assert (r.returncode, r.stdout, r.stderr) == (0, "stopped idle (stopped)\n", "")
    assert demo.status("idle")["state"] == "stopped"


def test_start_failure_and_unknown(tree: ConfigTree, svmgr) -> None:
    tree.simple(
        "bad",
        "echo nope; exit 1",
        type="oneshot",
        enabled=False,
        extra='[restart]\npolicy = "temporary"\n',
    )
    mgr = svmgr()
    r = ctl("--socket", mgr.socket, "start", "bad")
    assert r.returncode == 1, r.stdout
    line = one_error_line(r)
    assert "bad" in line and "exited 1" in line
    r = ctl("--socket", mgr.socket, "start", "ghost")
    assert r.returncode == 4
    assert one_error_line(r) == "dynamodctl: no such service: ghost"
    r = ctl("--socket", mgr.socket, "stop", "ghost")
    assert r.returncode == 4


def test_stop_stops_dependents_first(tree: ConfigTree, svmgr, tmp_path: Path) -> None:
    order = tmp_path / "order"
    for name, requires in (("db", []), ("api", ["db"]), ("web", ["api"])):
        tree.simple(
            name,
            f"trap 'echo {name} >> {order}; exit 0' TERM; while :; do sleep 0.05; done",
            extra=f"[dependencies]\nrequires = {json.dumps(requires)}\n",
        )
    tree.simple("other", FOREVER)
    mgr = svmgr()
    mgr.wait_state("web", "running")
    r = ctl("--socket", mgr.socket, "stop", "db")
    assert (r.returncode, r.stdout) == (0, (
        "stopped db (stopped)\n"
        "  api: blocked (requires db, which was stopped)\n"
        "  web: blocked (requires api, which is blocked)\n"
    )), r.stderr
    assert order.read_text().split() == ["web", "api", "db"]
    r = ctl("--socket", mgr.socket, "list", "--json")
    states = {s["name"]: s["state"] for s in json.loads(r.stdout)}
    assert states["db"] == "stopped" and states["other"] == "running"
    assert states["api"] not in ("running", "starting") and states["web"] not in (
        "running",
        "starting",
    )


def test_reload(tree: ConfigTree, svmgr) -> None:
    tree.simple("keep", FOREVER)
    tree.simple("edit", FOREVER, description="before")
    tree.simple("gone", FOREVER)
    mgr = svmgr()
    mgr.wait_state("gone", "running")

    r = ctl("--socket", mgr.socket, "reload")
    assert (r.returncode, r.stdout) == (0, "reloaded: no changes\n"), r.stderr

    tree.simple("edit", FOREVER, description="after")
    tree.simple("fresh", FOREVER)
    tree.remove("gone")
    r = ctl("--socket", mgr.socket, "reload")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "added: fresh\nremoved: gone\nchanged: edit\n"
    mgr.wait_state("fresh", "running")
    assert mgr.status("edit")["description"] == "after"
    r = ctl("--socket", mgr.socket, "status", "gone")
    assert r.returncode == 4

    # Config errors: one summary line, then each error; nothing changes.
    tree.service("broken", '[service]\nname = "broken"\nexec = ["/bin/true"]\nbogus-key = 1\n')
    r = ctl("--socket", mgr.socket, "reload")
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0] == "dynamodctl: reload failed: configuration has 1 error(s); nothing changed"
    assert lines[1:] == ["error: services/broken.toml: service.bogus-key: unknown key"]
    assert mgr.status("fresh")["state"] == "running"


def test_tree_shows_escalations(tree: ConfigTree, svmgr) -> None:
    tree.supervisor(
        "root",
        '[supervisor]\nname = "root"\n[restart]\nmax-restarts = 1000\nmax-restart-window = "60s"\n',
    )
    tree.supervisor(
        "sandbox",
        '[supervisor]\nname = "sandbox"\nparent = "root"\nstrategy = "one-for-all"\nescalate = true\n'
        '[restart]\nmax-restarts = 1\nmax-restart-window = "60s"\n',
    )
    tree.simple("crasher", "exit 1", supervisor="sandbox", extra='[restart]\ndelay = "100ms"\n')
    tree.simple("steady", FOREVER)
    mgr = svmgr()

    def escalated() -> bool:
        root = mgr.request("TreeStatus")["root"]
        sandbox = next(c for c in root["children"] if c["name"] == "sandbox")
        return sandbox["failures"] >= 1

    mgr.wait_for(escalated, what="an escalation")
    r = ctl("--socket", mgr.socket, "tree")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    sandbox = next(line for line in lines if "sandbox" in line)
    assert sandbox.startswith(("├─ sandbox [one-for-all]: ", "└─ sandbox [one-for-all]: "))
    assert "/1 in 1m, escalations " in sandbox
    assert int(sandbox.split("escalations ")[1].split()[0]) >= 1
    assert "ago)" in sandbox  # when the last escalation happened
    crasher = lines[lines.index(sandbox) + 1]
    assert crasher.lstrip("│ ").startswith("└─ crasher: ")
    assert any(
        line.startswith("├─ steady: running") or line.startswith("└─ steady: running")
        for line in lines
    )


def test_shutdown(tree: ConfigTree, svmgr) -> None:
    tree.simple("svc", FOREVER)
    mgr = svmgr()
    mgr.wait_state("svc", "running")
    r = ctl("--socket", mgr.socket, "shutdown", "maybe")
    assert r.returncode == 2 and one_error_line(r).startswith(
        "dynamodctl: Invalid value for 'kind'"
    )
    r = ctl("--socket", mgr.socket, "shutdown", "poweroff")
    assert (r.returncode, r.stdout) == (0, "poweroff started\n"), r.stderr
    assert mgr.proc is not None
    mgr.proc.wait(timeout=30)


# --- usage errors ---------------------------------------------------------------


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    sock = str(tmp_path / "none.sock")
    for args, line in (
        (["bogus"], "No such command 'bogus'. (see 'dynamodctl --help')"),
        (["status"], "Missing argument 'NAME'. (see 'dynamodctl status --help')"),
        (["list", "--frobnicate"], "No such option: --frobnicate (see 'dynamodctl list --help')"),
        (
            ["logs", "x", "-n", "many"],
            "Invalid value for '--lines' / '-n': 'many' is not a valid integer. "
            "(see 'dynamodctl logs --help')",
        ),
        (
            ["logs", "x", "-n", "-1"],
            "Invalid value for '--lines' / '-n': -1 is not in the range x>=0. "
            "(see 'dynamodctl logs --help')",
        ),
        (["logs", "x", "-n"], "Option '-n' requires an argument."),
        (["status", "x", "--json=1"], "Option '--json' does not take a value."),
        (["logs", "a", "b"], "Got unexpected extra argument (b) (see 'dynamodctl logs --help')"),
        (["cat", "--now"], "No such option: --now (see 'dynamodctl cat --help')"),
        (
            ["shutdown"],
            "Missing argument 'kind'. Choose from: poweroff, reboot, halt "
            "(see 'dynamodctl shutdown --help')",
        ),
        (["--bogus", "list"], "No such option: --bogus (see 'dynamodctl --help')"),
        (["--socket"], "Option '--socket' requires an argument."),
        (["--socket=/x"], "Missing command. (see 'dynamodctl --help')"),
    ):
        r = ctl("--socket", sock, *args) if args[0] != "--socket" else ctl(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert one_error_line(r) == f"dynamodctl: {line}", args
        assert r.stdout == ""
    r = ctl("--help")
    assert r.returncode == 0
    assert "Exit codes:" in r.stdout and "6  permission denied" in r.stdout
    r = ctl()
    assert r.returncode == 2 and r.stderr.startswith("Usage: dynamodctl")


def test_suggestions_are_close_or_absent(tmp_path: Path) -> None:
    """A suggestion names what the user most likely meant, or nothing: a
    systemctl verb dynamodctl lacks must not be steered to another command
    (`show` once suggested `shutdown`)."""
    sock = str(tmp_path / "none.sock")
    for word, hint in (
        ("isolate", ""),
        ("preset", ""),
        ("link", ""),
        ("revert", ""),
        ("list-dependencies", ""),
        ("lsit", " Did you mean 'list'?"),
        ("stauts", " Did you mean 'status'?"),
        ("stat", " Did you mean 'start' or 'status'?"),
        ("restrat", " Did you mean 'restart'?"),
        ("daemon-reload", " Did you mean 'reload'?"),
        ("reboot", " Did you mean 'shutdown reboot'?"),
        ("help", " Did you mean '--help'?"),
    ):
        r = ctl("--socket", sock, word)
        assert r.returncode == 2
        assert one_error_line(r) == (
            f"dynamodctl: No such command '{word}'.{hint} (see 'dynamodctl --help')"
        )
    r = ctl("list", "--jsn")
    assert one_error_line(r) == (
        "dynamodctl: No such option: --jsn. Did you mean '--json'? (see 'dynamodctl list --help')"
    )
    r = ctl("list", "--version")  # a root option, and not close to --json
    assert (
        one_error_line(r) == "dynamodctl: No such option: --version (see 'dynamodctl list --help')"
    )


def test_help(tmp_path: Path) -> None:
    r = ctl("--help", env=ctl_env(COLUMNS="80"))
    lines = r.stdout.splitlines()
    assert lines[:3] == [
        "Usage: dynamodctl [OPTIONS] COMMAND [ARGS]...",
        "",
        "  Control dynamod, the service manager.",
    ]
    listed = [
        line.split()[0]
        for line in lines[lines.index("Commands:") + 1 : lines.index("  Exit codes:") - 1]
    ]
    assert listed == [
        "list", "status", "is-active", "tree", "start", "stop", "restart", "try-restart",
        "enable", "disable", "mask", "unmask", "is-enabled", "is-failed", "reset-failed",
        "show", "cat", "kill", "edit", "analyze",
        "reload", "shutdown", "logs", "check", "plugins", "completion",
    ]  # fmt: skip
    assert all(len(line) <= 78 for line in lines if not line.startswith("    "))
    # -h anywhere before `--` is help, even with the arguments missing.
    for args in (["status", "--help"], ["status", "-h", "web"], ["--socket", "/x", "status", "-h"]):
        r = ctl(*args, env=ctl_env(COLUMNS="80"))
        assert (r.returncode, r.stderr) == (0, ""), args
        assert r.stdout == (
            "Usage: dynamodctl status [OPTIONS] NAME...\n"
            "\n"
            "  Show a service's state, process, supervision and last log lines.\n"
            "\n"
            "  Exit 3 when a service is not up (neither running nor a finished oneshot), as\n"
            "  systemctl status does; with --json it exits 0 whenever it could ask.\n"
            "\n"
            "Arguments:\n"
            "  NAME...  Service names.  [required]\n"
            "\n"
            "Options:\n"
            "  --json         Print the daemon's raw data as JSON.\n"
            "  --socket PATH  Control socket [default: $DYNAMOD_SOCKET or\n"
            "                 /run/dynamod/control.sock].\n"
            "  -h, --help     Show this message and exit.\n"
        )
    r = ctl("logs", "--help")
    assert "  -n, --lines N  How many recent lines.  [default: 50; x>=0]\n" in r.stdout
    r = ctl("shutdown", "--help")
    assert r.stdout.startswith("Usage: dynamodctl shutdown [OPTIONS] {poweroff|reboot|halt}\n")
    # A narrow terminal wraps; the columns stay aligned.
    r = ctl("status", "--help", env=ctl_env(COLUMNS="60"))
    assert all(len(line) <= 58 for line in r.stdout.splitlines())
    r = ctl("--version")
    assert (r.returncode, r.stdout) == (0, "dynamodctl 0.1.0\n")


# --- permissions --------------------------------------------------------------


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)
def test_permission_denied_exit_6(tree: ConfigTree) -> None:
    tree.simple("svc", FOREVER)
    tree.simple("idle", FOREVER, enabled=False)
    # The runtime dir must be reachable by nobody; pytest's tmp dirs are 0700.
    run = Path(tempfile.mkdtemp(prefix="dynamodctl-perm-"))
    run.chmod(0o755)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*nobody, sys.executable, "-m", "dynamod.ctl.main", *args],
            capture_output=True,
            text=True,
            env=ctl_env(),
            timeout=60,
            cwd="/",
        )

    try:
        with Svmgr(tree.root, run) as mgr:
            mgr.wait_state("svc", "running")
            # Reading is for everyone.
            r = as_nobody("--socket", mgr.socket, "status", "svc")
            assert r.returncode == 0, r.stderr
            r = as_nobody("--socket", mgr.socket, "tree")
            assert r.returncode == 0, r.stderr
            for args in (
                ["start", "idle"],
                ["stop", "svc"],
                ["restart", "svc"],
                ["reload"],
                ["shutdown", "halt"],
                ["enable", "idle"],
                ["disable", "svc"],
                ["mask", "idle"],
                ["unmask", "idle"],
                ["reset-failed"],
                ["kill", "svc"],
            ):
                r = as_nobody("--socket", mgr.socket, *args)
                assert r.returncode == 6, (args, r.stdout, r.stderr)
                assert "needs root" in one_error_line(r)
            assert mgr.status("svc")["state"] == "running"
            assert mgr.status("idle")["state"] == "stopped"
            assert not (tree.root / "overrides").exists()  # nothing was recorded
            # cat shows what everyone may read, and only that.
            r = as_nobody("--socket", mgr.socket, "cat", "svc")
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith(f"# {tree.root / 'services' / 'svc.toml'}\n[service]\n")
            (tree.root / "services" / "svc.toml").chmod(0o600)
            r = as_nobody("--socket", mgr.socket, "cat", "svc")
            assert r.returncode == 1
            assert one_error_line(r).endswith("svc.toml: not readable by you")
            assert "[service]" not in r.stdout
            # A socket nobody may not even reach is a permission problem too.
            private = Path(tempfile.mkdtemp(prefix="dynamodctl-private-"))
            try:
                os.symlink(mgr.socket, private / "control.sock")
                r = as_nobody("--socket", str(private / "control.sock"), "status", "svc")
                assert r.returncode == 6
                assert "Permission denied" in one_error_line(r)
            finally:
                shutil.rmtree(private)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def test_start_of_a_service_that_dies_at_once_fails(tree: ConfigTree, svmgr) -> None:
    tree.simple("flaky", "exit 3", enabled=False, extra='[restart]\npolicy = "temporary"\n')
    mgr = svmgr()
    r = ctl("--socket", mgr.socket, "start", "flaky")
    assert r.returncode != 0
    assert r.stdout == ""
    assert r.stderr.startswith("dynamodctl: flaky failed: exited 3"), r.stderr


def test_restart_lists_the_dependents_it_bounced(tree: ConfigTree, svmgr) -> None:
    tree.service("setup", '[service]\nname = "setup"\ntype = "oneshot"\nexec = ["/bin/true"]\n')
    for n in ("a", "b"):
        tree.simple(n, FOREVER, extra='[dependencies]\nrequires = ["setup"]\n')
    mgr = svmgr()
    mgr.wait_state("a", "running")
    mgr.wait_state("b", "running")
    r = ctl("--socket", mgr.socket, "restart", "setup")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "restarted setup (exited)"
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == ["a", "b"]


def test_no_block_prints_the_queued_job(tree: ConfigTree, svmgr, tmp_path) -> None:
    # The stop lasts until the test lets it end (a fixed 0.5 s could pass
    # before the next dynamodctl on a loaded machine).
    release = tmp_path / "release"
    tree.simple("slow", f"trap 'while [ ! -e {release} ]; do sleep 0.05; done; exit 0' TERM; "
                "while :; do sleep 0.05; done")
    mgr = svmgr()
    mgr.wait_state("slow", "running")
    r = ctl("--socket", mgr.socket, "stop", "--no-block", "slow")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"queued job \d+: stop slow\n", r.stdout), r.stdout
    r = ctl("--socket", mgr.socket, "start", "--job-mode", "fail", "slow")
    assert r.returncode != 0 and "has a stop job pending" in r.stderr, r.stderr
    release.touch()
    assert mgr.wait_state("slow", "stopped")["state"] == "stopped"
