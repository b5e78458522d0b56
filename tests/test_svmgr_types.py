"""Service types with real processes: simple, oneshot, forking (pid file,
double fork reaped by the manager as child subreaper). ``notify`` needs the
readiness plugin and is tested there."""

from __future__ import annotations

import os
import signal

from dynamod.testing import first_stamp, pid_alive, read_stamps, stamp

BARE = ["--no-plugins"]


def test_simple_service_runs_and_its_output_is_captured(tree, svmgr):
    tree.simple("web", "echo hello from web; trap 'exit 0' TERM; while :; do sleep 0.1; done")
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("web", "running")
    assert info["type"] == "simple"
    assert pid_alive(info["pid"])
    assert info["main_pid"] == info["pid"]
    assert "hello from web" in mgr.wait_logs("web", "hello from web")
    assert mgr.request("GetServiceByPid", {"pid": info["pid"]})["name"] == "web"


def test_oneshot_is_ready_when_it_exits_zero(tree, svmgr, tmp_path):
    rec = tmp_path / "rec"
    tree.simple(
        "setup",
        f"{stamp(rec, 'setup start')}; sleep 0.4; {stamp(rec, 'setup done')}",
        type="oneshot",
    )
    tree.simple(
        "app",
        f"{stamp(rec, 'app start')}; trap 'exit 0' TERM; while :; do sleep 0.1; done",
        extra='[dependencies]\nrequires = ["setup"]\n',
    )
    mgr = svmgr(args=BARE)
    # While the oneshot runs it is "starting" and its dependent waits.
    assert mgr.wait_state("setup", "starting")["pid"] is not None
    assert mgr.status("app")["state"] == "pending"
    assert mgr.wait_state("setup", "exited")["exit"] == "exited 0"
    mgr.wait_state("app", "running")
    mgr.wait_for(lambda: len(read_stamps(rec)) == 3, what="app's stamp")
    s = read_stamps(rec)
    assert first_stamp(s, "app start") > first_stamp(s, "setup done")


def test_oneshot_failure_fails_and_blocks_dependents(tree, svmgr):
    tree.simple(
        "setup", "echo broken; exit 1", type="oneshot", extra='[restart]\npolicy = "temporary"\n'
    )
    tree.simple("app", extra='[dependencies]\nrequires = ["setup"]\n')
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("setup", "failed")
    assert info["reason"] == "exited 1"
    app = mgr.wait_state("app", "blocked")
    assert app["reason"] == "requires setup, which failed"
    assert ("setup", "starting", "exited", "") not in mgr.transitions("setup")


def test_oneshot_start_timeout_kills_it_and_counts_as_failure(tree, svmgr, tmp_path):
    pidfile = tmp_path / "pid"
    tree.simple(
        "slow",
        f"echo $$ > {pidfile}; exec sleep 1000",
        type="oneshot",
        # Long enough for the shell to write its PID on a loaded machine.
        extra='[readiness]\ntimeout = "1s"\n[restart]\npolicy = "temporary"\n',
    )
    mgr = svmgr(args=BARE)
    # Failed by the timeout and killed: not by its own end, 1000 s away.
    info = mgr.wait_state("slow", "failed")
    assert "start timeout after 1s" in info["reason"]
    assert info["exit"] == "killed by SIGKILL"
    assert not pid_alive(int(pidfile.read_text()))


def test_oneshot_start_timeout_with_restart_policy_retries(tree, svmgr, tmp_path):
    runs = tmp_path / "runs"
    tree.simple(
        "slow",
        f"echo run >> {runs}; exec sleep 1000",
        type="oneshot",
        extra='[readiness]\ntimeout = "200ms"\n[restart]\npolicy = "permanent"\ndelay = "100ms"\nmax-restarts = 1\n',
    )
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("slow", "failed")
    assert "gave up after 1 restarts" in info["reason"]
    assert runs.read_text().count("run") == 2


def _daemon_script(pidfile):
    """A classic double-forking daemon: the start process runs a child that
    backgrounds the daemon, writes its pid file and exits; the daemon is
    orphaned and reparented to the manager (the child subreaper)."""
    return f"sh -c 'sleep 1000 & echo $! > {pidfile}'; exit 0"


def test_forking_service_main_pid_comes_from_pid_file(tree, svmgr, tmp_path):
    pidfile = tmp_path / "daemon.pid"
    tree.simple("daemon", _daemon_script(pidfile), type="forking", pid_file=str(pidfile))
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("daemon", "running")
    daemon_pid = int(pidfile.read_text())
    assert info["main_pid"] == daemon_pid
    assert pid_alive(daemon_pid)
    # The start process has exited (and was reaped: no zombie is left).
    start_pid = info["pid"]
    assert start_pid != daemon_pid
    assert not pid_alive(start_pid)
    assert not os.path.exists(f"/proc/{start_pid}")
    # The daemon's parent exited: it was reparented to the manager.
    with open(f"/proc/{daemon_pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    assert ppid == mgr.pid
    assert mgr.request("GetServiceByPid", {"pid": daemon_pid})["name"] == "daemon"
    # Stopping signals the daemon, not the long gone start process.
    mgr.request("StopService", {"name": "daemon"})
    assert mgr.status("daemon")["state"] == "stopped"
    assert not pid_alive(daemon_pid)


def test_forking_daemon_death_is_reaped_with_its_status(tree, svmgr, tmp_path):
    pidfile = tmp_path / "daemon.pid"
    tree.simple(
        "daemon",
        _daemon_script(pidfile),
        type="forking",
        pid_file=str(pidfile),
        extra='[restart]\npolicy = "temporary"\n',
    )
    mgr = svmgr(args=BARE)
    mgr.wait_state("daemon", "running")
    daemon_pid = int(pidfile.read_text())
    os.kill(daemon_pid, signal.SIGKILL)
    info = mgr.wait_state("daemon", "failed")
    # Only the parent (the subreaper) can know how it died.
    assert info["reason"] == "killed by SIGKILL"
    assert not os.path.exists(f"/proc/{daemon_pid}")


def test_forking_daemon_restarts_under_permanent_policy(tree, svmgr, tmp_path):
    pidfile = tmp_path / "daemon.pid"
    tree.simple(
        "daemon",
        _daemon_script(pidfile),
        type="forking",
        pid_file=str(pidfile),
        extra='[restart]\ndelay = "100ms"\n',
    )
    mgr = svmgr(args=BARE)
    first = mgr.wait_state("daemon", "running")["main_pid"]
    os.kill(first, signal.SIGKILL)
    mgr.wait_for(
        lambda: (i := mgr.status("daemon"))["state"] == "running" and i["main_pid"] != first,
        what="daemon restarted",
    )
    second = mgr.status("daemon")
    assert second["restarts"] == 1
    assert second["main_pid"] == int(pidfile.read_text())


def test_forking_start_process_failure_is_a_failure(tree, svmgr):
    tree.simple(
        "daemon",
        "exit 4",
        type="forking",
        pid_file="/nonexistent/x.pid",
        extra='[restart]\npolicy = "temporary"\n',
    )
    mgr = svmgr(args=BARE)
    assert mgr.wait_state("daemon", "failed")["reason"] == "start process exited 4"


def test_forking_without_pid_file_written_fails(tree, svmgr, tmp_path):
    pidfile = tmp_path / "never.pid"
    tree.simple(
        "daemon",
        "exit 0",
        type="forking",
        pid_file=str(pidfile),
        extra='[restart]\npolicy = "temporary"\n',
    )
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("daemon", "failed")
    assert info["reason"] == f"pid file {pidfile} missing or invalid after start"


def test_forking_pid_file_naming_a_dead_pid_fails(tree, svmgr, tmp_path):
    # The daemon dies (and is reaped by the start process) before the start
    # process exits: the pid file names a pid that is not running.
    pidfile = tmp_path / "d.pid"
    tree.simple(
        "daemon",
        f"sleep 0 & wait $!; echo $! > {pidfile}; exit 0",
        type="forking",
        pid_file=str(pidfile),
        extra='[restart]\npolicy = "temporary"\n',
    )
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("daemon", ["failed", "stopped"])
    assert info["state"] == "failed"
    assert (
        info["reason"]
        == f"pid file {pidfile} names PID {int(pidfile.read_text())}, which is not running"
    )
    assert "running" not in [new for _n, _o, new, _r in mgr.transitions("daemon")]


def test_forking_daemon_that_died_before_the_parent_exited(tree, svmgr, tmp_path):
    # The daemon exits 3 while the start process still runs; the manager
    # (subreaper) reaps it once the start process is gone and matches the pid
    # file with the remembered status.
    pidfile = tmp_path / "d.pid"
    tree.simple(
        "daemon",
        f"sh -c 'sh -c \"sleep 0.1; exit 3\" & echo $! > {pidfile}'; sleep 0.5; exit 0",
        type="forking",
        pid_file=str(pidfile),
        extra='[restart]\npolicy = "temporary"\n',
    )
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("daemon", ["failed", "stopped"])
    assert info["state"] == "failed"
    assert info["reason"] == "exited 3"


def test_forking_start_timeout_when_parent_never_exits(tree, svmgr):
    tree.simple(
        "daemon",
        "exec sleep 5",
        type="forking",
        pid_file="/tmp/never-written.pid",
        extra='[readiness]\ntimeout = "300ms"\n[restart]\npolicy = "temporary"\n',
    )
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("daemon", "failed", timeout=5)
    assert "start timeout after 300ms" in info["reason"]


def test_forking_daemon_that_exited_zero_before_ready_is_a_failure(tree, svmgr, tmp_path):
    # Exiting before being ready is a failed start even with status 0.
    pidfile = tmp_path / "d.pid"
    tree.simple(
        "daemon",
        f"sh -c 'sh -c \"sleep 0.1; exit 0\" & echo $! > {pidfile}'; sleep 0.5; exit 0",
        type="forking",
        pid_file=str(pidfile),
        extra='[restart]\npolicy = "transient"\nmax-restarts = 0\n',
    )
    mgr = svmgr(args=BARE)
    info = mgr.wait_state("daemon", ["failed", "stopped"])
    assert info["state"] == "failed"
    assert info["reason"].startswith("exited 0 before it was ready")
