"""dynamodctl's output that needs no daemon: formatting, colour rules."""

from __future__ import annotations

import os
import re

import pytest

from dynamod.ctl import render

ANSI = re.compile(r"\033\[[0-9;]*m")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0s"),
        (0.9, "0s"),
        (59, "59s"),
        (60, "1m00s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (90061, "1d01h"),
    ],
)
def test_age(seconds: float, text: str) -> None:
    assert render.age(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.1, "100ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (30.0, "30s"),
        (60.0, "1m"),
        (7200, "2h"),
        (None, "?"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert render.duration(seconds) == text


def test_table_aligns_despite_colour() -> None:
    rows = [
        [("web", None), ("running", render.GREEN), ("1", None)],
        [("database", None), ("failed", render.RED), ("", None)],
    ]
    plain = render.table(["NAME", "STATE", "PID"], rows, render.Style(color=False))
    coloured = render.table(["NAME", "STATE", "PID"], rows, render.Style(color=True))
    assert plain == ["NAME      STATE    PID", "web       running  1", "database  failed"]
    assert [ANSI.sub("", line) for line in coloured] == plain
    assert "\033[32mrunning\033[0m" in coloured[1]


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    master, slave = os.openpty()
    try:
        with open(slave, "w", encoding="utf-8", closefd=False) as tty:
            assert render.Style.for_stream(tty).color
            monkeypatch.setenv("NO_COLOR", "1")
            assert not render.Style.for_stream(tty).color
            monkeypatch.delenv("NO_COLOR")
            monkeypatch.setenv("TERM", "dumb")
            assert not render.Style.for_stream(tty).color
    finally:
        os.close(master)
        os.close(slave)
    monkeypatch.setenv("TERM", "xterm")
    with open(tmp_path / "out", "w", encoding="utf-8") as f:
        style = render.Style.for_stream(f)
    assert not style.color and style.unicode
    with open(tmp_path / "out", "w", encoding="ascii") as f:
        assert not render.Style.for_stream(f).unicode


def test_status_shows_plugin_extras_and_unknown_keys() -> None:
    info = {
        "name": "web",
        "state": "failed",
        "since": 1000.0,
        "type": "notify",
        "readiness": "notify",
        "reason": "readiness timed out",
        "exit": "killed by SIGKILL",
        "pid": None,
        "explicit": True,
        "enabled": True,
        "supervisor": "root",
        "restarts": 3,
        "status_text": "Loading...",
        "extra": {"memory-current": 1234, "oom-kills": 0},
        "cgroup": "/dynamod/web",  # a key a newer server added
    }
    text = render.service_status(
        info, [[1000.25, "hello"]], 1090.0, render.Style(color=False, unicode=False)
    )
    lines = text.splitlines()
    assert lines[0] == "* web"
    values = {
        label.strip(): value
        for label, _, value in (line.partition(": ") for line in lines[1:] if line)
    }
    assert values["State"].startswith("failed since ") and values["State"].endswith("; 1m30s ago")
    assert values["Reason"] == "readiness timed out"
    assert values["Last exit"] == "killed by SIGKILL"
    assert values["Status"] == "Loading..."
    assert values["memory-current"] == "1234" and values["oom-kills"] == "0"
    assert values["cgroup"] == "/dynamod/web"
    assert "PID" not in values
    assert lines[-1].endswith(".250 hello")


def test_tree_ascii_fallback() -> None:
    root = {
        "name": "root",
        "kind": "supervisor",
        "strategy": "one-for-one",
        "state": "running",
        "restarts": 1,
        "max_restarts": 5,
        "max_restart_window": 60.0,
        "failures": 0,
        "children": [
            {"name": "a", "kind": "service", "state": "running", "restarts": 0},
            {
                "name": "sub",
                "kind": "supervisor",
                "strategy": "rest-for-one",
                "state": "failed",
                "reason": "too many restarts",
                "restarts": 2,
                "max_restarts": 2,
                "max_restart_window": 0.5,
                "failures": 4,
                "last_failure": 95.0,
                "children": [
                    {"name": "b", "kind": "service", "state": "restarting", "restarts": 7}
                ],
            },
        ],
    }
    assert render.tree(root, 100.0, render.Style(unicode=False)).splitlines() == [
        "root [one-for-one]: running, restarts 1/5 in 1m, escalations 0",
        "|- a: running",
        "`- sub [rest-for-one]: failed (too many restarts), restarts 2/2 in 500ms, escalations 4 (last 5s ago)",
        "   `- b: restarting, restarts 7",
    ]
