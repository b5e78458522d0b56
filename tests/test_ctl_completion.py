"""Shell completion against a real dynamod-svmgr: the answers of
``dynamodctl __complete``, and the scripts of ``dynamodctl completion``
loaded by real bash, zsh and fish (interactively, in tmux, where a TAB
must turn ``status ba`` into ``status base``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dynamod.ctl.completion import complete
from dynamod.testing import ConfigTree, Svmgr, wait_until

FOREVER = "trap 'exit 0' TERM; while :; do sleep 0.1; done"


@pytest.fixture
def mgr(tree: ConfigTree, svmgr) -> Svmgr:
    """base and bravo run; idle is stopped (not enabled)."""
    tree.simple("base", FOREVER)
    tree.simple("bravo", FOREVER)
    tree.simple("idle", FOREVER, enabled=False)
    m = svmgr(args=["--no-plugins"])
    m.wait_state("base", "running")
    m.wait_state("bravo", "running")
    return m


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    """A directory with `dynamodctl` in it, for PATH: the installed script
    when there is one, else a wrapper around this interpreter."""
    d = tmp_path / "bin"
    d.mkdir()
    script = Path(sys.executable).parent / "dynamodctl"
    if script.exists():
        (d / "dynamodctl").symlink_to(script)
    else:
        (d / "dynamodctl").write_text(
            f'#!/bin/sh\nexec {sys.executable} -m dynamod.ctl.main "$@"\n'
        )
        (d / "dynamodctl").chmod(0o755)
    return d


def shell_env(bindir: Path, socket: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    env.update(PATH=f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}", DYNAMOD_SOCKET=socket)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), TERM="xterm")
    return env


def words(result: object) -> list[str]:
    assert isinstance(result, list), result
    return [w for w, _ in result]


# --- the answers ---------------------------------------------------------------


def test_commands_options_and_values() -> None:
    assert words(complete(["sta"])) == ["status", "start"]
    assert (
        "list",
        "List services: state, pid, time in state, restarts, supervisor, reason.",
    ) in complete([""])
    assert "__complete" not in words(complete([""]))  # hidden
    assert words(complete(["-"])) == ["--help", "--socket", "--version", "-h"]
    assert words(complete(["logs", "--"])) == ["--follow", "--help", "--lines", "--socket"]
    assert words(complete(["logs", "-f", "-"])) == ["--help", "--lines", "--socket", "-h", "-n"]
    assert complete(["shutdown", "re"]) == [("reboot", "")]
    assert complete(["shutdown", "halt", ""]) == []  # nothing after the last argument
    assert complete(["completion", ""]) == [("bash", ""), ("zsh", ""), ("fish", "")]
    # Path values: the shell completes them itself.
    assert complete(["--socket", "/r"]) == ":files"
    assert complete(["--socket=/r"]) == ":files"
    assert complete(["check", "--config-dir", ""]) == ":dirs"
    assert complete(["logs", "x", "-n", ""]) == []  # a number: nothing to offer
    # After `--` there are no options, only arguments.
    assert complete(["list", "--", "--"]) == []


def test_service_names_come_from_the_daemon(mgr: Svmgr, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNAMOD_SOCKET", mgr.socket)
    assert complete(["status", ""]) == [
        ("base", "running"),
        ("bravo", "running"),
        ("idle", "stopped"),
    ]
    assert words(complete(["status", "b"])) == ["base", "bravo"]
    assert words(complete(["status", "base", "b"])) == ["bravo"]  # not twice
    assert words(complete(["logs", "i"])) == ["idle"]
    assert words(complete(["logs", "idle", ""])) == []  # logs takes one name
    # start offers what is not up, stop what is not down.
    assert words(complete(["start", ""])) == ["idle"]
    assert words(complete(["stop", ""])) == ["base", "bravo"]
    assert words(complete(["restart", "--", ""])) == ["base", "bravo", "idle"]
    # The socket named on the line is the one asked, wherever it is.
    monkeypatch.setenv("DYNAMOD_SOCKET", "/nonexistent.sock")
    assert complete(["status", ""]) == []
    assert words(complete(["--socket", mgr.socket, "status", "b"])) == ["base", "bravo"]
    assert words(complete([f"--socket={mgr.socket}", "status", "b"])) == ["base", "bravo"]
    assert words(complete(["status", "--socket", mgr.socket, "b"])) == ["base", "bravo"]


def test_no_daemon_means_nothing_quickly(tmp_path: Path) -> None:
    """A socket nobody answers on (a hung daemon) costs one short timeout,
    not the default 30 s, and prints nothing on either stream."""
    import socket as so

    hung = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    path = str(tmp_path / "hung.sock")
    hung.bind(path)
    hung.listen(1)
    try:
        # Waiting out READ_TIMEOUT (30 s) would overrun this timeout and fail.
        r = subprocess.run(
            [sys.executable, "-m", "dynamod.ctl.main", "--socket", path, "__complete", "bash",
             "--", "--socket", path, "status", ""],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    finally:
        hung.close()


def test_answer_formats(mgr: Svmgr) -> None:
    env = {**os.environ, "DYNAMOD_SOCKET": mgr.socket}

    def ask(*args: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "dynamod.ctl.main", "__complete", *args],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert (r.returncode, r.stderr) == (0, "")
        return r.stdout

    assert ask("bash", "--", "status", "b") == "base\nbravo\n"
    assert ask("fish", "--", "status", "b") == "base\trunning\nbravo\trunning\n"
    assert ask("zsh", "--", "is-a") == (
        "is-active\tPrint each service's state; exit 0 only if all are up (for scripts).\n"
    )
    assert ask("bash", "--", "--socket", "") == ":files\n"
    assert ask("bash") == "".join(f"{w}\n" for w in words(complete([""])))


# --- the scripts in real shells -------------------------------------------------------


def script(tmp_path: Path, shell: str) -> Path:
    r = subprocess.run(
        [sys.executable, "-m", "dynamod.ctl.main", "completion", shell],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    path = tmp_path / f"dynamodctl.{shell}"
    path.write_text(r.stdout)
    return path


BASH_CALL = r"""
source "$1"
complete -p dynamodctl
comp() {  # what readline does on TAB: fill COMP_* and call the function
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _dynamodctl_complete
    echo "$*|${COMPREPLY[*]}"
}
comp dynamodctl sta
comp dynamodctl status b
comp dynamodctl start ""
comp dynamodctl --socket = "$2"
comp dynamodctl shutdown p
"""


@pytest.mark.skipif(not shutil.which("bash"), reason="bash is not installed")
def test_bash_function(mgr: Svmgr, bindir: Path, tmp_path: Path) -> None:
    sock_prefix = mgr.socket[:-3]  # ".../control.s": completes to the socket file
    r = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", BASH_CALL, "bash", str(script(tmp_path, "bash")), sock_prefix],
        capture_output=True, text=True, env=shell_env(bindir, mgr.socket, tmp_path), timeout=60,
    )  # fmt: skip
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines() == [
        "complete -F _dynamodctl_complete dynamodctl",
        "dynamodctl sta|status start",
        "dynamodctl status b|base bravo",
        "dynamodctl start |idle",
        f"dynamodctl --socket = {sock_prefix}|{mgr.socket}",
        "dynamodctl shutdown p|poweroff",
    ]


class Tmux:
    """An interactive shell in a private tmux server: type, then read the
    screen until what is expected shows."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *command: str) -> None:
        self.base = ["tmux", "-L", f"dynamodctl-test-{os.getpid()}-{id(self)}", "-f", "/dev/null"]
        subprocess.run(
            [*self.base, "new-session", "-d", "-x", "150", "-y", "40", *command],
            env=env, check=True, timeout=30, cwd=tmp_path,
        )  # fmt: skip

    def type(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", *keys], check=True, timeout=30)

    def screen(self) -> str:
        r = subprocess.run(
            [*self.base, "capture-pane", "-p"], capture_output=True, text=True, timeout=30
        )
        return r.stdout

    def wait_for(self, text: str) -> str:
        return wait_until(lambda: text in self.screen() and self.screen(), what=repr(text),
                          context=self.screen)  # fmt: skip

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def tmux_shell(tmp_path: Path, bindir: Path, mgr: Svmgr):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    sessions: list[Tmux] = []

    def start(*command: str) -> Tmux:
        t = Tmux(tmp_path, shell_env(bindir, mgr.socket, tmp_path), *command)
        sessions.append(t)
        return t

    yield start
    for t in sessions:
        t.close()


@pytest.mark.skipif(not shutil.which("bash"), reason="bash is not installed")
def test_bash_tab_completes_a_live_service(tmux_shell, tmp_path: Path) -> None:
    sh = tmux_shell("bash", "--norc", "--noprofile")
    sh.type(f"PS1='$ '; source {script(tmp_path, 'bash')}; echo loaded", "Enter")
    sh.wait_for("\nloaded")
    # Keys are read in order: the "Z" comes after the completion ran.
    sh.type("dynamodctl status ba", "Tab", "Z")
    sh.wait_for("$ dynamodctl status base Z")  # a unique match gets its space
    sh.type("C-u", "dynamodctl sto", "Tab", "Z")
    sh.wait_for("$ dynamodctl stop Z")
    # start offers only what is not up: idle, the one stopped service.
    sh.type("C-u", "dynamodctl start ", "Tab", "Z")
    sh.wait_for("$ dynamodctl start idle Z")
    sh.type("C-u", "dynamodctl stop b", "Tab", "Tab")  # ambiguous: the list
    screen = sh.wait_for("bravo")
    listed = screen.split("$ dynamodctl stop b\n", 1)[1].splitlines()[0]
    assert listed.split() == ["base", "bravo"]


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_zsh_loads_and_tab_completes(tmux_shell, tmp_path: Path, bindir: Path, mgr: Svmgr) -> None:
    path = script(tmp_path, "zsh")
    # Loads without a word on stderr, and registers itself.
    r = subprocess.run(
        ["zsh", "-f", "-c", f"autoload -U compinit && compinit -u -D && source {path} && print -r -- $_comps[dynamodctl]"],
        capture_output=True, text=True, env=shell_env(bindir, mgr.socket, tmp_path), timeout=60,
    )  # fmt: skip
    assert (r.returncode, r.stdout, r.stderr) == (0, "_dynamodctl\n", "")
    sh = tmux_shell("zsh", "-f")
    sh.type(f"PS1='%% '; autoload -U compinit; compinit -u -D; source {path}; echo loaded", "Enter")
    sh.wait_for("\nloaded")
    sh.type("dynamodctl status ba", "Tab", "Z")
    sh.wait_for("% dynamodctl status base Z")
    sh.type("C-u", "dynamodctl st", "Tab")
    screen = sh.wait_for("stop    -- Stop services")
    assert "status  -- Show a service's state" in screen


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
def test_fish(mgr: Svmgr, bindir: Path, tmp_path: Path) -> None:
    path = script(tmp_path, "fish")

    def fish_complete(line: str) -> list[str]:
        r = subprocess.run(
            ["fish", "--no-config", "-c", f"source {path}; complete -C '{line}'"],
            capture_output=True, text=True, env=shell_env(bindir, mgr.socket, tmp_path), timeout=60,
        )  # fmt: skip
        assert r.returncode == 0 and r.stderr == "", r.stderr
        return r.stdout.splitlines()

    assert fish_complete("dynamodctl sta") == [
        "start\tStart services (and what they require); wait until they are up.",
        "status\tShow a service's state, process, supervision and last log lines.",
    ]
    assert fish_complete("dynamodctl status b") == ["base\trunning", "bravo\trunning"]
    assert fish_complete("dynamodctl start ") == ["idle\tstopped"]
    assert fish_complete(f"dynamodctl --socket={mgr.socket[:-3]}") == [f"--socket={mgr.socket}"]
