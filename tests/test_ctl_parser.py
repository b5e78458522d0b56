"""dynamodctl's parser on the real command table, in-process: each command
line reaches the command's function with the values a user meant, or is
refused with exit 2 and one line. (tests/test_ctl.py runs the whole
program against a daemon.)"""

from __future__ import annotations

from typing import Any

import pytest

from dynamod.ctl import verbs
from dynamod.ctl.cli import Arg, Command, Opt
from dynamod.ctl.suggest import close_matches, distance

Calls = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every built-in command records its arguments instead of running."""
    seen: Calls = []
    for cmd in verbs.COMMANDS.values():

        def record(_name: str = cmd.name, **values: Any) -> int:
            seen.append((_name, values))
            return 0

        monkeypatch.setattr(cmd, "run", record)
    return seen


@pytest.mark.parametrize(
    ("argv", "name", "values"),
    [
        (["status", "web"], "status", {"names": ["web"], "json": False, "socket": None}),
        (["status", "web", "db", "--json"], "status", {"names": ["web", "db"], "json": True, "socket": None}),
        (["--socket", "/s", "status", "web"], "status", {"names": ["web"], "json": False, "socket": "/s"}),
        # After the command wins, wherever it is; the last one of them too.
        (["--socket=/a", "status", "--socket", "/b", "web", "--socket=/c"], "status",
         {"names": ["web"], "json": False, "socket": "/c"}),
        # An empty --socket= after the command leaves the one before.
        (["--socket", "/a", "list", "--socket="], "list",
         {"json": False, "socket": "/a", "failed": False, "state": [], "patterns": []}),
        (["is-active", "-q", "web"], "is-active", {"names": ["web"], "quiet": True, "socket": None}),
        (["logs", "web"], "logs", {"name": "web", "lines": 50, "follow": False, "socket": None}),
        (["logs", "-fn3", "web"], "logs", {"name": "web", "lines": 3, "follow": True, "socket": None}),
        (["logs", "web", "--lines=0", "-n", "7"], "logs", {"name": "web", "lines": 7, "follow": False, "socket": None}),
        # An option's value is the next word, whatever it looks like.
        (["logs", "web", "-n", "-0"], "logs", {"name": "web", "lines": 0, "follow": False, "socket": None}),
        (["status", "web", "--socket", "--json"], "status", {"names": ["web"], "json": False, "socket": "--json"}),
        # `--` ends the options, at the root and after the command.
        (["--", "status", "--", "-q", "--json"], "status", {"names": ["-q", "--json"], "json": False, "socket": None}),
        (["status", "-", ""], "status", {"names": ["-", ""], "json": False, "socket": None}),
        (["start", "a", "b"], "start",
         {"names": ["a", "b"], "no_block": False, "job_mode": "replace", "socket": None}),
        (["stop", "--no-block", "a", "--job-mode=fail"], "stop",
         {"names": ["a"], "no_block": True, "job_mode": "fail", "socket": None}),
        (["shutdown", "halt"], "shutdown", {"kind": "halt", "socket": None}),
        (["check"], "check", {"config_dir": None, "json": False}),
        (["check", "--config-dir", "/etc/x"], "check", {"config_dir": "/etc/x", "json": False}),
        (["plugins", "--json"], "plugins", {"json": True}),
        (["completion", "fish"], "completion", {"shell": "fish"}),
        (["__complete", "bash", "--", "status", "--json", ""], "__complete",
         {"shell": "bash", "words": ["status", "--json", ""]}),
        (["__complete", "zsh"], "__complete", {"shell": "zsh", "words": []}),
    ],
)  # fmt: skip
def test_command_lines(calls: Calls, argv: list[str], name: str, values: dict[str, Any]) -> None:
    assert verbs.run(argv) == 0
    assert calls == [(name, values)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status"], "Missing argument 'NAME'. (see 'dynamodctl status --help')"),
        (["status", "--"], "Missing argument 'NAME'. (see 'dynamodctl status --help')"),
        (["status", "web", "--socket"], "Option '--socket' requires an argument."),
        (["status", "web", "--json=1"], "Option '--json' does not take a value."),
        (["status", "--help=yes"], "Option '--help' does not take a value."),
        (["list", "-x"], "No such option: -x (see 'dynamodctl list --help')"),
        (["is-active", "-qx", "a"], "No such option: -x (see 'dynamodctl is-active --help')"),
        (["logs", "a", "-n", "1.5"],
         "Invalid value for '--lines' / '-n': '1.5' is not a valid integer. (see 'dynamodctl logs --help')"),
        (["shutdown", "Halt"],
         "Invalid value for 'kind': 'Halt' is not one of 'poweroff', 'reboot', 'halt'. "
         "(see 'dynamodctl shutdown --help')"),
        (["completion", "tcsh"],
         "Invalid value for 'shell': 'tcsh' is not one of 'bash', 'zsh', 'fish'. "
         "(see 'dynamodctl completion --help')"),
        (["--version=1"], "Option '--version' does not take a value."),
        (["--", "--version"], "No such command '--version'. (see 'dynamodctl --help')"),
        (["-x"], "No such option: -x (see 'dynamodctl --help')"),
    ],
)  # fmt: skip
def test_refused(
    calls: Calls, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert verbs.run(argv) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"dynamodctl: {message}\n")
    assert calls == []


def test_help_and_version_win(calls: Calls, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status", "-h"], ["status", "--json", "--help", "a", "b"], ["logs", "-fh"]):
        assert verbs.run(argv) == 0
        assert capsys.readouterr().out.startswith(f"Usage: dynamodctl {argv[0]} [OPTIONS] ")
    # A bad word is reported before help, as click does.
    assert verbs.run(["status", "--bogus", "--help"]) == 2
    assert "No such option: --bogus" in capsys.readouterr().err
    assert verbs.run(["--version", "list"]) == 0
    assert capsys.readouterr().out == "dynamodctl 0.1.0\n"
    assert verbs.run(["--socket", "/x", "-h", "list"]) == 0
    assert capsys.readouterr().out.startswith("Usage: dynamodctl [OPTIONS] COMMAND")
    assert calls == []


def test_hidden_commands_are_not_listed(capsys: pytest.CaptureFixture[str]) -> None:
    verbs.run(["--help"])
    out = capsys.readouterr().out
    assert "__complete" not in out and "  completion  " in out
    assert verbs.run(["__completx"]) == 2
    assert "Did you mean" not in capsys.readouterr().err


def test_a_new_command_is_parsed_helped_and_completed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the table promises: a verb added there (the coming `start
    --job-mode`, `show -p`) needs nothing else."""
    got: list[dict[str, Any]] = []
    show = Command(
        "show",
        lambda **v: got.append(v) or 0,
        "Show properties.\n\nOne key=value per line.",
        verbs.NAMES,
        Opt("--property", "-p", metavar="PROP", multiple=True, help="Only this property."),
        Opt("--job-mode", metavar="MODE", choices=("replace", "fail"), default="replace",
            help="What to do with a conflicting job."),
        Opt("--no-block", help="Do not wait."),
        verbs.SOCKET,
    )  # fmt: skip
    monkeypatch.setitem(verbs.COMMANDS, "show", show)
    assert verbs.run(["show", "a", "-p", "State", "--property=PID", "--job-mode=fail", "b"]) == 0
    assert got == [
        {
            "names": ["a", "b"],
            "property": ["State", "PID"],
            "job_mode": "fail",
            "no_block": False,
            "socket": None,
        }
    ]
    assert verbs.run(["show", "a", "--job-mode", "x"]) == 2
    assert "'x' is not one of 'replace', 'fail'." in capsys.readouterr().err
    monkeypatch.setenv("COLUMNS", "80")
    verbs.run(["show", "--help"])
    out = capsys.readouterr().out
    assert (
        "  -p, --property PROP  Only this property.\n"
        "  --job-mode MODE      What to do with a conflicting job.  [replace|fail;\n"
        "                       default: replace]\n"
        "  --no-block           Do not wait.\n"
    ) in out
    from dynamod.ctl.completion import complete

    assert ("show", "Show properties.") in complete(["sh"])
    assert complete(["show", "--job-mode", "r"]) == [("replace", "")]
    assert complete(["show", "--job-mode="]) == [
        ("--job-mode=replace", ""),
        ("--job-mode=fail", ""),
    ]
    assert [w for w, _ in complete(["show", "--no"])] == ["--no-block"]


def test_many_argument_leaves_what_later_ones_need() -> None:
    from dynamod.ctl.cli import assign_arguments

    cmd = Command("cp", lambda **v: 0, "Copy.", Arg("SRC", many=True), Arg("DEST"))
    values: dict[str, Any] = {}
    assign_arguments(cmd, ["a", "b", "c"], values)
    assert values == {"src": ["a", "b"], "dest": "c"}


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [("", "", 0), ("list", "list", 0), ("lsit", "list", 1), ("stat", "start", 1),
     ("show", "stop", 2), ("show", "shutdown", 4), ("bogus", "logs", 2), ("ab", "", 2)],
)  # fmt: skip
def test_distance(a: str, b: str, d: int) -> None:
    assert distance(a, b) == d == distance(b, a)


def test_close_matches() -> None:
    known = [c.name for c in verbs.COMMANDS.values() if not c.hidden]
    assert close_matches("show", known) == []
    assert close_matches("bogus", known) == []
    assert close_matches("s", known) == []  # too short to be an abbreviation
    assert close_matches("stauts", known) == ["status"]  # the nearest, not every near one
    assert close_matches("sta", known) == ["status", "start"]  # in the table's order
    assert close_matches("re", known) == ["restart", "reset-failed", "reload"]
    assert close_matches("is-actve", known) == ["is-active"]
    assert close_matches("--jsn", ["--json", "--socket"]) == ["--json"]
