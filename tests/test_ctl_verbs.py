"""The systemctl-style verbs against a real dynamod-svmgr: enable, disable,
mask, unmask, is-enabled, is-failed, reset-failed, show, cat, kill, edit,
list filters. dynamodctl runs as a subprocess through its entry point;
what is asserted is what a user sees (output, exit code, files on disk)."""

from __future__ import annotations

import os
import random
import signal
import threading
import tomllib
from pathlib import Path

import pytest

from dynamod.ipc.client import RemoteError
from dynamod.testing import FOREVER, ConfigTree, Svmgr, ctl, one_error_line, wait_until

HUP_AWARE = "trap 'echo got HUP' HUP; trap 'exit 0' TERM; while :; do sleep 0.1; done"


def files_of(tree: ConfigTree) -> dict[str, bytes]:
    """Every file under services/ and supervisors/: what must stay untouched."""
    return {str(p): p.read_bytes() for sub in ("services", "supervisors")
            for p in sorted((tree.root / sub).glob("*"))}


def state_file(tree: ConfigTree, name: str) -> Path:
    return tree.root / "overrides" / "state" / f"{name}.toml"


@pytest.fixture
def sys3(tree: ConfigTree, svmgr) -> Svmgr:
    """base <- app (requires), side (wants base), idle (not enabled)."""
    tree.simple("base", HUP_AWARE)
    tree.simple("app", FOREVER, extra='[dependencies]\nrequires = ["base"]\n')
    tree.simple("side", FOREVER, extra='[dependencies]\nwants = ["base"]\n')
    tree.simple("idle", FOREVER, enabled=False)
    mgr = svmgr(args=["--no-plugins"])
    for name in ("base", "app", "side"):
        mgr.wait_state(name, "running")
    return mgr


def test_enable_survives_svmgr_restart_and_files_stay_untouched(tree: ConfigTree, svmgr) -> None:
    tree.simple("idle", FOREVER, enabled=False)
    tree.simple("web", FOREVER)
    before = files_of(tree)
    mgr = svmgr(args=["--no-plugins"])
    mgr.wait_state("web", "running")
    r = ctl("--socket", mgr.socket, "is-enabled", "idle")
    assert (r.returncode, r.stdout) == (1, "disabled\n")

    r = ctl("--socket", mgr.socket, "enable", "idle")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"enabled idle ({state_file(tree, 'idle')})\n"
    assert mgr.status("idle")["state"] == "stopped"  # enable alone starts nothing
    r = ctl("--socket", mgr.socket, "disable", "web")
    assert r.returncode == 0, r.stderr
    assert mgr.status("web")["state"] == "running"  # disable never stops
    assert ctl("--socket", mgr.socket, "enable", "idle").stdout == "idle was already enabled\n"
    assert files_of(tree) == before

    mgr.stop()
    mgr2 = svmgr(args=["--no-plugins"])
    mgr2.wait_state("idle", "running")  # enabled: started at boot
    assert mgr2.status("web")["state"] == "stopped"  # disabled: not
    r = ctl("--socket", mgr2.socket, "is-enabled", "idle", "web")
    assert (r.returncode, r.stdout) == (0, "enabled\ndisabled\n")  # one enabled is enough
    r = ctl("--socket", mgr2.socket, "is-enabled", "-q", "web")
    assert (r.returncode, r.stdout) == (1, "")
    # And after a reload: nothing restarts, nothing changes.
    pid = mgr2.status("idle")["pid"]
    assert mgr2.request("Reload")["changed"] == []
    assert mgr2.status("idle")["pid"] == pid
    assert mgr2.status("idle")["enabled"] is True
    assert files_of(tree) == before


def test_enable_now_and_disable_now(sys3: Svmgr) -> None:
    r = ctl("--socket", sys3.socket, "enable", "--now", "idle")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith("started idle (running, pid ")
    r = ctl("--socket", sys3.socket, "disable", "--now", "base")
    assert r.returncode == 0, r.stderr
    assert "stopped base (stopped)" in r.stdout
    assert "  app: blocked (requires base, which was stopped)" in r.stdout  # it went first
    assert sys3.status("base")["enabled"] is False


def test_mask_blocks_dependents_and_says_so(sys3: Svmgr, tree: ConfigTree) -> None:
    sock = sys3.socket
    r = ctl("--socket", sock, "mask", "--now", "base")
    assert r.returncode == 0, r.stderr
    assert sys3.status("base")["state"] == "stopped"
    assert sys3.status("app")["state"] == "blocked"

    r = ctl("--socket", sock, "start", "base")
    assert r.returncode == 1
    assert one_error_line(r) == ("dynamodctl: base is masked: it cannot be started "
                                 "('dynamodctl unmask base' allows it again)")
    r = ctl("--socket", sock, "start", "app")
    assert r.returncode == 1
    assert one_error_line(r) == "dynamodctl: app is blocked: requires base, which is masked"
    assert sys3.status("app")["reason"] == "requires base, which is masked"
    # Only wanted: it starts without it.
    assert ctl("--socket", sock, "restart", "side").returncode == 0
    assert sys3.status("base")["state"] == "stopped"
    r = ctl("--socket", sock, "status", "base")
    assert "masked (cannot be started; 'dynamodctl unmask' allows it)" in r.stdout
    r = ctl("--socket", sock, "is-enabled", "base")
    assert (r.returncode, r.stdout) == (1, "masked\n")
    r = ctl("--socket", sock, "enable", "base")
    assert r.returncode == 1
    assert "base is masked: unmask it before enabling it" in one_error_line(r)
    with pytest.raises(RemoteError, match="is masked"):
        sys3.request("RestartService", {"name": "base"})

    # And a reload: the mask is read back from its file, nothing changes.
    assert sys3.request("Reload")["changed"] == []
    assert (sys3.status("base")["state"], sys3.status("base")["masked"]) == ("stopped", True)
    # The mask survives a restart of svmgr: nothing starts base at boot.
    sys3.stop()
    mgr = Svmgr(tree.root, sys3.runtime_dir, args=["--no-plugins"])
    with mgr:
        mgr.wait_state("app", "blocked")
        assert mgr.status("base")["state"] == "stopped"
        assert mgr.status("base")["masked"] is True
        r = ctl("--socket", mgr.socket, "unmask", "base")
        assert r.returncode == 0, r.stderr
        assert not state_file(tree, "base").exists()  # nothing left to say
        r = ctl("--socket", mgr.socket, "start", "app")
        assert r.returncode == 0, r.stderr
        assert mgr.status("base")["state"] == "running"


def test_masked_running_service_is_not_restarted(sys3: Svmgr) -> None:
    assert ctl("--socket", sys3.socket, "mask", "base").returncode == 0
    assert sys3.status("base")["state"] == "running"  # mask alone stops nothing
    r = ctl("--socket", sys3.socket, "kill", "base", "-s", "KILL")
    assert r.returncode == 0, r.stderr
    info = sys3.wait_state("base", "failed")
    assert info["reason"] == "killed by SIGKILL; not restarted: it is masked"


def test_kill(sys3: Svmgr) -> None:
    sock = sys3.socket
    r = ctl("--socket", sock, "kill", "base", "-s", "FOO")
    assert r.returncode == 1
    assert one_error_line(r).startswith("dynamodctl: KillService: field 'signal': unknown signal 'FOO'")
    r = ctl("--socket", sock, "kill", "base", "--signal=99")
    assert r.returncode == 1
    assert "unknown signal number 99" in one_error_line(r)
    r = ctl("--socket", sock, "kill", "base", "-s", "hup", "--main")
    assert r.returncode == 0, r.stderr
    sys3.wait_logs("base", "got HUP")
    assert sys3.status("base")["state"] == "running"
    r = ctl("--socket", sock, "kill", "idle")
    assert r.returncode == 1
    assert one_error_line(r) == "dynamodctl: idle is not running (stopped): no process to signal"
    r = ctl("--socket", sock, "kill", "nosuch")
    assert r.returncode == 4
    r = ctl("--socket", sock, "kill", "base", "--kill-whom", "control")
    assert r.returncode == 1
    assert one_error_line(r) == "dynamodctl: base has no control process to signal"
    # The default: TERM to all of it; the service exits 0 and, permanent, comes back.
    pid = sys3.status("app")["pid"]
    assert ctl("--socket", sock, "kill", "app").returncode == 0
    wait_until(lambda: (s := sys3.status("app"))["state"] == "running" and s["pid"] != pid, "app back")


def test_reset_failed_and_is_failed(tree: ConfigTree, svmgr) -> None:
    tree.simple("bad", "exit 3", extra='[restart]\npolicy = "temporary"\n')
    tree.simple("ok", FOREVER)
    mgr = svmgr(args=["--no-plugins"])
    mgr.wait_state("bad", "failed")
    mgr.wait_state("ok", "running")
    r = ctl("--socket", mgr.socket, "is-failed", "bad")
    assert (r.returncode, r.stdout) == (0, "failed\n")
    r = ctl("--socket", mgr.socket, "is-failed", "ok")
    assert (r.returncode, r.stdout) == (1, "running\n")
    r = ctl("--socket", mgr.socket, "list", "--failed")
    assert r.stdout.splitlines()[1].split()[:2] == ["bad", "failed"]
    assert "ok" not in r.stdout
    r = ctl("--socket", mgr.socket, "reset-failed", "bad")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    info = mgr.status("bad")
    assert (info["state"], info["reason"], info["exit"]) == ("stopped", "failed state reset", None)
    assert ctl("--socket", mgr.socket, "is-failed", "-q", "bad").returncode == 1
    assert ctl("--socket", mgr.socket, "reset-failed").returncode == 0  # none failed: fine
    assert ctl("--socket", mgr.socket, "reset-failed", "nosuch").returncode == 4


def test_reset_failed_of_a_refused_file_says_why(tree: ConfigTree, svmgr) -> None:
    tree.service("broken", '[service]\nname = "broken"\nexec = ["/bin/true"]\nbogus = 1\n')
    mgr = svmgr(args=["--no-plugins"])
    r = ctl("--socket", mgr.socket, "reset-failed", "broken")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "dynamodctl: broken stays failed: its configuration was refused "
        "(fix the file, then 'dynamodctl reload')",
        "services/broken.toml: service.bogus: unknown key",
    ]


def test_show(sys3: Svmgr, tree: ConfigTree) -> None:
    r = ctl("--socket", sys3.socket, "show", "app")
    assert r.returncode == 0, r.stderr
    props = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert props["name"] == "app"
    assert props["state"] == "running"
    assert props["enabled"] == "yes" and props["masked"] == "no" and props["enablement"] == "enabled"
    assert props["requires"] == "base"
    assert props["pid"] == str(sys3.status("app")["pid"])
    assert props["source"] == str(tree.root / "services" / "app.toml")
    assert props["dropin"] == "" and props["job"] == "" and props["load_error"] == ""
    assert list(props)[:3] == ["name", "description", "state"]  # a stable order
    r = ctl("--socket", sys3.socket, "show", "app", "base", "-p", "state,masked", "-p", "requires")
    assert r.stdout == "state=running\nmasked=no\nrequires=base\n\nstate=running\nmasked=no\nrequires=\n"
    r = ctl("--socket", sys3.socket, "show", "app", "-p", "main_pid", "--value")
    assert r.stdout == f"{sys3.status('app')['main_pid']}\n"
    r = ctl("--socket", sys3.socket, "show", "app", "-p", "MainPID")
    assert r.returncode == 1
    assert one_error_line(r) == ("dynamodctl: unknown property MainPID "
                                 "(see 'dynamodctl show NAME' for all of them)")
    assert ctl("--socket", sys3.socket, "show", "nosuch").returncode == 4


def test_list_filters(sys3: Svmgr) -> None:
    def names(*args: str) -> list[str]:
        r = ctl("--socket", sys3.socket, "list", *args)
        assert r.returncode == 0, r.stderr
        return [line.split()[0] for line in r.stdout.splitlines()[1:] if line and not line[0].isdigit()]

    assert names("--state", "stopped") == ["idle"]
    assert names("--state=running,stopped", "a*", "i*") == ["app", "idle"]
    assert names("--state", "running", "--state", "stopped", "?ase") == ["base"]
    assert names("--failed") == []
    assert names("nomatch*") == []
    r = ctl("--socket", sys3.socket, "list", "--state", "runing")
    assert r.returncode == 2
    assert "'runing' is not a state" in one_error_line(r)


def test_cat_shows_file_override_and_state(sys3: Svmgr, tree: ConfigTree) -> None:
    ctl("--socket", sys3.socket, "disable", "app")
    dropin = tree.root / "overrides" / "app.toml"
    dropin.write_text('[service]\ndescription = "patched"\n')
    r = ctl("--socket", sys3.socket, "cat", "app")
    assert r.returncode == 0, r.stderr
    src = tree.root / "services" / "app.toml"
    assert r.stdout == (
        f"# {src}\n{src.read_text()}\n"
        f"# {dropin} (override)\n[service]\ndescription = \"patched\"\n\n"
        f"# {state_file(tree, 'app')} (enable/mask state)\n{state_file(tree, 'app').read_text()}"
    )


def editor(tmp_path: Path, body: str) -> str:
    """An $EDITOR that writes ``body`` into the file it is given."""
    path = tmp_path / "ed.sh"
    path.write_text(f"#!/bin/sh\ncat > \"$1\" <<'EOF'\n{body}EOF\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("body, problem", [
    ('[service]\nrestart-policy = "always"\n',
     "overrides/app.toml: service.restart-policy: unknown key"),
    ('[service]\ntype = "forky"\n', "overrides/app.toml: service.type:"),
    ('[service\n', "its override overrides/app.toml is invalid: invalid TOML"),
    ('[dependencies]\nrequires = ["nosuch"]\n', "nosuch"),
])  # fmt: skip
def test_edit_refuses_an_invalid_override(sys3: Svmgr, tree: ConfigTree, tmp_path: Path,
                                          body: str, problem: str) -> None:
    before = files_of(tree)
    pid = sys3.status("app")["pid"]
    env = {**os.environ, "EDITOR": editor(tmp_path, body)}
    env.pop("DYNAMOD_SOCKET", None)
    r = ctl("--socket", sys3.socket, "edit", "app", env=env)
    assert r.returncode == 1, r.stdout
    lines = r.stderr.splitlines()
    assert lines[0] == "dynamodctl: app would not load with this override; nothing saved"
    assert any(problem in line for line in lines[1:]), r.stderr
    kept = lines[-1].removeprefix("(your text is kept in ").removesuffix(")")
    assert Path(kept).read_text() == body  # the user's work is not lost
    Path(kept).unlink()
    assert not (tree.root / "overrides" / "app.toml").exists()  # nothing saved
    assert files_of(tree) == before
    assert sys3.status("app")["pid"] == pid


def test_edit_saves_checks_and_reloads(sys3: Svmgr, tree: ConfigTree, tmp_path: Path) -> None:
    env = {**os.environ, "EDITOR": editor(tmp_path, '[service]\ndescription = "edited"\n')}
    before = files_of(tree)
    r = ctl("--socket", sys3.socket, "edit", "app", env=env)
    assert r.returncode == 0, r.stderr
    dropin = tree.root / "overrides" / "app.toml"
    assert r.stdout.splitlines() == [f"saved the override of app ({dropin})", "changed: app"]
    assert dropin.read_text() == '[service]\ndescription = "edited"\n'
    info = sys3.wait_state("app", "running")
    assert info["description"] == "edited"
    assert info["dropin"] == str(dropin)
    assert files_of(tree) == before
    # The same text again: nothing to save, nothing reloaded.
    r = ctl("--socket", sys3.socket, "edit", "app", env=env)
    assert r.stdout == "app: no changes; nothing saved\n"
    # Comments only: the override is removed.
    env["EDITOR"] = editor(tmp_path, "# nothing\n")
    r = ctl("--socket", sys3.socket, "edit", "app", "--no-reload", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"removed the override of app ({dropin})\n"
    assert not dropin.exists()
    # An editor that fails saves nothing.
    env["EDITOR"] = "false"
    r = ctl("--socket", sys3.socket, "edit", "app", env=env)
    assert r.returncode == 1
    assert one_error_line(r) == "dynamodctl: the editor exited with 1; nothing saved"


def test_concurrent_enable_disable_is_consistent(tree: ConfigTree, svmgr) -> None:
    names = [f"s{i}" for i in range(8)]
    for n in names:
        tree.simple(n, FOREVER, enabled=False)
    mgr = svmgr(args=["--no-plugins"])
    rng = random.Random(14)
    plans = [[(rng.choice(names), rng.choice(["EnableService", "DisableService"])) for _ in range(40)]
             for _ in range(24)]
    failures: list[BaseException] = []

    def client(plan: list[tuple[str, str]]) -> None:
        try:
            with mgr.client() as c:
                for name, req in plan:
                    body = c.request(req, {"name": name}).body
                    assert body["enabled"] is (req == "EnableService")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    state_dir = tree.root / "overrides" / "state"
    assert [p.name for p in state_dir.iterdir() if p.name.startswith(".")] == []  # no temporaries
    live = {n: mgr.status(n)["enabled"] for n in names}
    on_disk = {n: tomllib.loads(state_file(tree, n).read_text())["enabled"] for n in names
               if state_file(tree, n).exists()}
    assert {n: on_disk.get(n, False) for n in names} == live
    mgr.stop()
    mgr2 = svmgr(args=["--no-plugins"])
    assert {n: mgr2.status(n)["enabled"] for n in names} == live


def test_svmgr_killed_during_enable_storm_leaves_whole_files(tree: ConfigTree, svmgr) -> None:
    names = [f"s{i}" for i in range(4)]
    for n in names:
        tree.simple(n, FOREVER, enabled=False)
    mgr = svmgr(args=["--no-plugins"])
    stop = threading.Event()

    def storm() -> None:
        try:
            with mgr.client() as c:
                while not stop.is_set():
                    for n in names:
                        c.request("EnableService", {"name": n})
                        c.request("MaskService", {"name": n})
                        c.request("UnmaskService", {"name": n})
                        c.request("DisableService", {"name": n})
        except Exception:
            pass  # the manager is killed under it

    threads = [threading.Thread(target=storm) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: any(state_file(tree, n).exists() for n in names), "a state file")
    os.kill(mgr.pid, signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    mgr.proc.wait()
    for n in names:
        path = state_file(tree, n)
        if path.exists():
            data = tomllib.loads(path.read_text())  # whole: it parses
            assert set(data) <= {"enabled", "masked"}
    # A leftover temporary (killed between write and rename) is ignored.
    mgr2 = svmgr(args=["--no-plugins"])
    assert "warning" not in mgr2.log().lower()
    for n in names:
        assert isinstance(mgr2.status(n)["enabled"], bool)


def test_broken_state_file_is_a_warning_and_ignored(tree: ConfigTree, svmgr) -> None:
    tree.simple("web", FOREVER)
    path = state_file(tree, "web")
    path.parent.mkdir(parents=True)
    path.write_text("enabled = maybe\n")
    mgr = svmgr(args=["--no-plugins"])
    mgr.wait_state("web", "running")  # the file's enabled = true decides
    assert "overrides/state/web.toml" in mgr.log() and "(ignored)" in mgr.log()


def test_completion_knows_the_new_verbs(sys3: Svmgr) -> None:
    def complete(*words: str) -> list[str]:
        r = ctl("--socket", sys3.socket, "__complete", "bash", "--", "--socket", sys3.socket, *words)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    assert {"enable", "disable", "edit"} <= set(complete("e")) | set(complete("d"))
    assert complete("is-") == ["is-active", "is-enabled", "is-failed"]
    assert complete("kill", "-s", "HU") == ["HUP"]
    assert "running" in complete("list", "--state", "")
    assert complete("show", "app", "-p", "main") == ["main_pid"]
    assert complete("mask", "id") == ["idle"]
    ctl("--socket", sys3.socket, "kill", "-s", "KILL", "idle")  # not running: nothing
    assert complete("reset-failed", "") == []  # no failed service to offer
