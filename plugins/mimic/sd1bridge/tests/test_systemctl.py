"""The real systemctl (systemd 252) driving a real dynamod-svmgr through
the bridge: on the system bus (a private dbus-daemon) and on
/run/systemd/private with no dbus-daemon at all (the ``via`` parameter)."""

from __future__ import annotations

import re
import subprocess
import threading

import pytest
from dynamod_mimic_common.testing import NOBODY
from dynamod_sd1bridge.testing import settle, slow_oneshot

SLOW_FLAG = "slow.go"


def populate(tree, work):
    tree.simple("web", description="Web frontend", extra='[dependencies]\nrequires = ["db"]\n')
    tree.simple("db", description="Database")
    # A oneshot: its start job waits for the exit, so it fails however slow
    # the machine (a simple service's job is done once it stayed up 50 ms).
    tree.service("bad", '''
        [service]
        name = "bad"
        type = "oneshot"
        description = "Always fails"
        exec = ["/bin/sh", "-c", "echo broken; exit 3"]
    ''')
    tree.service("once", '[service]\nname = "once"\ntype = "oneshot"\nexec = ["/bin/true"]\n')
    tree.service("off", '[service]\nname = "off"\nenabled = false\nexec = ["/bin/sleep", "1000"]\n')
    slow_oneshot(tree, "slow", work / SLOW_FLAG)


@pytest.fixture
def up(stack, tree, work):
    populate(tree, work)
    return stack.start(("web", "db", "once"))


def ok(stack, *args):
    r = stack.systemctl(*args)
    assert r.returncode == 0, f"systemctl {' '.join(args)}: rc={r.returncode}\n{r.stdout}{r.stderr}\n{stack.log()}"
    return r.stdout


def units_listed(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        parts = line.lstrip("● ").split()
        if parts and (parts[0].endswith((".service", ".slice"))):
            rows[parts[0]] = parts[1:4]
    return rows


def test_list_units(up):
    rows = units_listed(ok(up, "list-units"))
    assert rows["web.service"] == ["loaded", "active", "running"]
    assert rows["once.service"] == ["loaded", "active", "exited"]
    assert rows["-.slice"] == ["loaded", "active", "active"]
    assert "off.service" not in rows  # inactive: hidden without --all
    rows = units_listed(ok(up, "list-units", "--all"))
    assert rows["off.service"] == ["loaded", "inactive", "dead"]
    assert set(units_listed(ok(up, "list-units", "--type=service", "--all"))) == {
        "web.service", "db.service", "bad.service", "once.service", "off.service", "slow.service"}
    assert set(units_listed(ok(up, "list-units", "--all", "w*", "d*"))) == {"web.service", "db.service"}
    assert set(units_listed(ok(up, "list-units", "--state=exited"))) == {"once.service"}


def test_failed_unit_listed_and_reported(up):
    settle(lambda: up.svmgr.status("bad")["state"] == "failed", "bad failing", up)
    out = ok(up, "list-units", "--state=failed")
    assert units_listed(out) == {"bad.service": ["loaded", "failed", "failed"]}
    r = up.systemctl("is-failed", "bad")
    assert (r.returncode, r.stdout.strip()) == (0, "failed")
    r = up.systemctl("status", "bad")
    assert r.returncode == 3
    assert "Active: failed (Result: exit-code)" in r.stdout
    # A run the bridge saw (this one failed before it started) has its PID.
    assert up.systemctl("start", "bad").returncode == 1
    r = up.systemctl("status", "bad")
    assert re.search(r"Main PID: \d+ \(code=exited, status=3\)", r.stdout), r.stdout
    r = up.systemctl("is-system-running")
    assert (r.returncode, r.stdout.strip()) == (1, "degraded")


def test_status(up):
    out = ok(up, "status", "web")
    pid = up.svmgr.status("web")["main_pid"]
    assert out.startswith("● web.service - Web frontend\n")
    assert f"Loaded: loaded ({up.tree.root}/services/web.toml; enabled)" in out
    assert re.search(r"Active: active \(running\) since \w+ \d{4}-\d\d-\d\d", out), out
    assert f"Main PID: {pid} (sh)" in out
    r = up.systemctl("status", "nope.service")
    assert (r.returncode, r.stderr.strip()) == (4, "Unit nope.service could not be found.")
    r = up.systemctl("status", "off")
    assert r.returncode == 3 and "Active: inactive (dead)" in r.stdout


def test_show_exact_values(up):
    svc = up.svmgr.status("web")
    out = ok(up, "show", "-p", "Id,MainPID,ActiveState,SubState,Requires,RequiredBy,Type,Restart,"
             "LoadState,UnitFileState,NRestarts,Slice", "web")
    props = dict(line.split("=", 1) for line in out.splitlines())
    assert props == {"Id": "web.service", "MainPID": str(svc["main_pid"]), "ActiveState": "active",
                     "SubState": "running", "Requires": "db.service", "RequiredBy": "",
                     "Type": "simple", "Restart": "always", "LoadState": "loaded",
                     "UnitFileState": "enabled", "NRestarts": "0", "Slice": "-.slice"}
    out = ok(up, "show", "-p", "RequiredBy", "--value", "db")
    assert out.strip() == "web.service"


def test_is_active_is_enabled(up):
    # systemctl: exit 0 if any of them is active.
    r = up.systemctl("is-active", "web", "off", "nope")
    assert (r.returncode, r.stdout.split()) == (0, ["active", "inactive", "inactive"])
    r = up.systemctl("is-active", "off", "nope")
    assert (r.returncode, r.stdout.split()) == (3, ["inactive", "inactive"])
    r = up.systemctl("is-enabled", "web")
    assert (r.returncode, r.stdout.strip()) == (0, "enabled")
    r = up.systemctl("is-enabled", "off")
    assert r.returncode != 0 and r.stdout.strip() == "disabled"
    r = up.systemctl("is-enabled", "nope.service")
    assert r.returncode != 0 and "No such file or directory" in r.stderr


def test_start_stop_restart_wait_for_the_job(up):
    ok(up, "start", "off")
    assert up.svmgr.status("off")["state"] == "running"  # done when systemctl returns
    first = up.svmgr.status("off")["main_pid"]
    ok(up, "restart", "off")
    assert up.svmgr.status("off")["main_pid"] not in (None, first)
    ok(up, "stop", "off")
    assert up.svmgr.status("off")["state"] == "stopped"
    ok(up, "try-restart", "off")  # not running: skipped, still fine
    assert up.svmgr.status("off")["state"] == "stopped"
    ok(up, "reload-or-restart", "off")
    assert up.svmgr.status("off")["state"] == "running"
    before = up.svmgr.status("off")["main_pid"]
    ok(up, "try-restart", "off")
    assert up.svmgr.status("off")["main_pid"] != before
    ok(up, "stop", "db")  # web requires db: stopped first
    assert up.svmgr.status("web")["state"] in ("stopped", "blocked")
    ok(up, "start", "web")
    assert up.svmgr.status("db")["state"] == "running"


def test_start_failure_and_unknown_unit(up):
    r = up.systemctl("start", "bad")
    assert r.returncode == 1
    assert "Job for bad.service failed because the control process exited with error code." in r.stderr
    r = up.systemctl("start", "nope")
    assert (r.returncode, r.stderr.strip()) == (5, "Failed to start nope.service: Unit nope.service not found.")
    r = up.systemctl("reload", "web")
    assert r.returncode == 3
    assert r.stderr.startswith("Failed to reload web.service: Job type reload is not applicable")


def test_no_block_list_jobs_and_cancel(up, work):
    ok(up, "start", "--no-block", "slow")  # returns at once: the job runs on
    settle(lambda: "slow.service" in up.systemctl("list-jobs").stdout, "the slow job listed", up)
    out = ok(up, "list-jobs")
    row = next(line.split() for line in out.splitlines() if "slow.service" in line)
    assert row[1:4] == ["slow.service", "start", "running"]
    ok(up, "cancel", row[0])
    settle(lambda: "No jobs running." in up.systemctl("list-jobs").stdout, "no jobs", up)
    r = up.systemctl("cancel", row[0])
    assert r.returncode == 1 and "does not exist" in r.stderr
    (work / SLOW_FLAG).touch()
    ok(up, "start", "slow")
    assert up.svmgr.status("slow")["state"] == "exited"


def test_waiting_start_sees_its_job_canceled(up):
    waiter = subprocess.Popen(up.ns.argv(["systemctl", "start", "slow"]), env=up.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The job exists only because the waiting systemctl made it.
    settle(lambda: "slow.service" in up.systemctl("list-jobs").stdout, "the slow job listed", up)
    job_id = next(line.split()[0] for line in up.systemctl("list-jobs").stdout.splitlines()
                  if "slow.service" in line)
    ok(up, "cancel", job_id)
    _out, err = waiter.communicate(timeout=60)
    assert (waiter.returncode, err.strip()) == (1, "Job for slow.service canceled.")


def test_list_unit_files(up):
    out = ok(up, "list-unit-files", "--type=service")
    files = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if ".service" in line}
    assert files["web.service"] == "enabled" and files["off.service"] == "disabled"
    out = ok(up, "list-unit-files", "w*")
    assert "web.service" in out and "db.service" not in out


def test_daemon_reload_picks_up_a_new_service(up):
    r = up.systemctl("status", "fresh")
    assert r.returncode == 4
    up.tree.simple("fresh", description="Added later", enabled=False)
    ok(up, "daemon-reload")
    r = up.systemctl("status", "fresh")
    assert r.returncode == 3 and "fresh.service - Added later" in r.stdout
    ok(up, "start", "fresh")
    assert up.systemctl("is-active", "fresh").stdout.strip() == "active"


def test_many_clients_at_once(up):
    results: list[tuple[str, int]] = []

    def worker(args):
        r = up.systemctl(*args)
        results.append((args[0], r.returncode))

    threads = [threading.Thread(target=worker, args=(a,)) for a in
               [("is-active", "web"), ("status", "db"), ("list-units",), ("show", "once")] * 6
               + [("restart", "off")] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == len(threads)
    assert {rc for verb, rc in results} == {0}, results
    assert up.svmgr.status("off")["state"] == "running"


def test_is_system_running(up):
    settle(lambda: up.svmgr.status("bad")["state"] == "failed", "bad failing", up)
    assert up.systemctl("is-system-running").stdout.strip() == "degraded"
    up.tree.remove("bad")
    ok(up, "daemon-reload")
    r = up.systemctl("is-system-running")
    assert (r.returncode, r.stdout.strip()) == (0, "running")


def test_non_root_may_read_but_not_change(bus_stack, tree, work):
    populate(tree, work)
    up = bus_stack.start(("web",))
    r = up.systemctl("is-active", "web", user=NOBODY)
    assert (r.returncode, r.stdout.strip()) == (0, "active")
    r = up.systemctl("start", "off", user=NOBODY)
    assert r.returncode == 4 and "Access denied" in r.stderr, r.stderr
    r = up.systemctl("stop", "web", user=NOBODY)
    assert r.returncode == 4
    assert up.svmgr.status("web")["state"] == "running"
    assert up.svmgr.status("off")["state"] == "stopped"
