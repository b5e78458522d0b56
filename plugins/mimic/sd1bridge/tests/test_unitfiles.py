"""systemctl enable/disable/mask/unmask/kill/reset-failed through svmgr's
verbs, persisting across an svmgr restart."""

from __future__ import annotations

import signal

from dynamod_sd1bridge.testing import settle

from dynamod.testing import Svmgr


def ok(stack, *args):
    r = stack.systemctl(*args)
    assert r.returncode == 0, f"systemctl {' '.join(args)}: rc={r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def test_enable_disable_persist_across_svmgr_restart(stack, tree, work):
    tree.simple("web")
    tree.simple("db", enabled=False)
    up = stack.start(("web",))
    ok(up, "disable", "web")
    ok(up, "enable", "db")
    assert up.systemctl("is-enabled", "web").stdout.strip() == "disabled"
    assert up.systemctl("is-enabled", "db").stdout.strip() == "enabled"
    assert up.svmgr.status("web")["state"] == "running"  # disable stops nothing
    up.svmgr.stop()
    up.svmgr = Svmgr(tree.root, work / "run")
    up.svmgr.wait_state("db", "running")  # enabled: started at boot
    settle(lambda: up.systemctl("is-active", "db").stdout.strip() == "active", "the bridge back", up)
    assert up.svmgr.status("web")["state"] == "stopped"
    r = up.systemctl("is-enabled", "web")
    assert (r.returncode, r.stdout.strip()) == (1, "disabled")
    files = dict(line.split()[:2] for line in ok(up, "list-unit-files").splitlines()[1:] if ".service" in line)
    assert files == {"web.service": "disabled", "db.service": "enabled"}


def test_mask_refuses_starts(stack, tree):
    tree.simple("web")
    up = stack.start(("web",))
    ok(up, "mask", "web")
    r = up.systemctl("is-enabled", "web")
    assert (r.returncode, r.stdout.strip()) == (1, "masked")
    assert "LoadState=masked" in ok(up, "show", "-p", "LoadState", "web")
    ok(up, "stop", "web")
    r = up.systemctl("start", "web")
    assert (r.returncode, r.stderr.splitlines()[0]) == (1, "Failed to start web.service: Unit web.service is masked.")
    r = up.systemctl("enable", "web")
    assert r.returncode == 1 and "Unit file web.service is masked." in r.stderr
    ok(up, "unmask", "web")
    ok(up, "start", "web")
    assert up.svmgr.status("web")["state"] == "running"
    r = up.systemctl("enable", "nope.service")
    assert r.returncode == 1 and "nope.service does not exist" in r.stderr


def test_kill_and_reset_failed(stack, tree, work):
    flag = work / "hup"
    tree.simple("web", f"trap 'touch {flag}' HUP; trap 'exit 0' TERM; while :; do sleep 0.05; done")
    tree.simple("bad", "exit 7", extra='[restart]\npolicy = "temporary"\n')
    up = stack.start(("web",))
    ok(up, "kill", "-s", "HUP", "web")
    settle(flag.exists, "web to get SIGHUP", up)
    assert up.svmgr.status("web")["state"] == "running"
    r = up.systemctl("kill", "--kill-whom=control", "web")
    assert r.returncode == 1 and "no control process" in r.stderr
    ok(up, "kill", "-s", str(int(signal.SIGKILL)), "--kill-whom=main", "web")
    settle(lambda: up.svmgr.status("web")["restarts"] >= 1, "web restarted after SIGKILL", up)
    settle(lambda: up.svmgr.status("bad")["state"] == "failed", "bad failed", up)
    assert up.systemctl("is-failed", "bad").stdout.strip() == "failed"
    ok(up, "reset-failed", "bad")
    r = up.systemctl("is-failed", "bad")
    assert (r.returncode, r.stdout.strip()) == (1, "inactive")
    assert up.svmgr.status("bad")["state"] == "stopped"
    r = up.systemctl("reset-failed", "nope")
    assert r.returncode == 1 and "not found" in r.stderr


def test_cat_reads_the_toml_and_its_dropin(stack, tree):
    tree.simple("web", description="Web")
    up = stack.start(("web",))
    out = ok(up, "cat", "web")
    assert out.startswith(f"# {tree.root}/services/web.toml\n[service]\nname = \"web\"")


def test_verbs_refused_for_non_root(bus_stack, tree):
    tree.simple("web")
    up = bus_stack.start(("web",))
    # Only the job verbs map AccessDenied to exit 4; these exit 1.
    seen = {}
    for verb in ("disable", "mask", "kill", "reset-failed"):
        r = up.systemctl(verb, "web", user=65534)
        assert "Access denied" in r.stderr, (verb, r.stderr)
        seen[verb] = r.returncode
    assert seen == {"disable": 1, "mask": 1, "kill": 1, "reset-failed": 1}
    assert up.systemctl("is-enabled", "web").stdout.strip() == "enabled"
    assert up.svmgr.status("web")["restarts"] == 0
