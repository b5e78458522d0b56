"""What a service process gets: environment, environment files, working
directory, user and groups, PATH lookup, stdin, captured output, and no
leaked file descriptors."""

from __future__ import annotations

import os
import stat

import pytest

from dynamod.testing import pid_alive

BARE = ["--no-plugins"]
ONESHOT = {"type": "oneshot"}


def run_oneshot(tree, svmgr, script, env=None, **keys):
    tree.simple("probe", script, type="oneshot", **keys)
    mgr = svmgr(args=BARE, env=env) if env is not None else svmgr(args=BARE)
    info = mgr.wait_state("probe", ["exited", "failed"])
    assert info["state"] == "exited", info
    return mgr, mgr.logs("probe")


def test_environment_and_environment_files(tree, svmgr, tmp_path):
    env1 = tmp_path / "env1"
    env1.write_text('# comment\nFROM_FILE=one\nSHARED=file\n\nexport QUOTED="a b"\n')
    env2 = tmp_path / "env2"
    env2.write_text("SECOND='two'\nFROM_FILE=overridden\n")
    _, lines = run_oneshot(
        tree,
        svmgr,
        'echo "inline=$INLINE shared=$SHARED from_file=$FROM_FILE quoted=$QUOTED second=$SECOND svc=$DYNAMOD_SERVICE"',
        environment={"INLINE": "yes", "SHARED": "inline"},
        environment_file=[str(env1), "-/nonexistent/optional.env", str(env2)],
    )
    assert "inline=yes shared=file from_file=overridden quoted=a b second=two svc=probe" in lines


def test_manager_environment_does_not_leak_into_services(tree, svmgr):
    env = dict(os.environ, DYNAMOD_TEST_SECRET="leaked", LANG="C.UTF-8")
    _, lines = run_oneshot(
        tree, svmgr, 'echo "secret=${DYNAMOD_TEST_SECRET-unset} lang=$LANG path=$PATH"', env=env
    )
    line = next(x for x in lines if x.startswith("secret="))
    assert line.startswith("secret=unset lang=C.UTF-8 path=")
    assert line.split("path=", 1)[1]


def test_signals_a_service_gets_are_at_their_defaults(tree, svmgr):
    # svmgr started from a shell's background job inherits SIGINT and
    # SIGQUIT ignored (and Python ignores SIGPIPE): a service must not, or
    # a stop-signal of SIGQUIT (nginx's) would do nothing.
    import signal

    tree.simple("probe", "exec grep -E '^Sig(Ign|Blk):' /proc/self/status", type="oneshot")
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGQUIT, signal.SIGINT)}
    try:
        mgr = svmgr(args=BARE)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert mgr.wait_state("probe", ["exited", "failed"])["state"] == "exited"
    masks = dict(line.split(":\t") for line in mgr.logs("probe") if line.startswith("Sig"))
    # Signals 1-31 and the real-time ones a program can use; 32 and 33 are
    # glibc's own, which no program can set (this sandbox's parent has them
    # ignored).
    usable = sum(1 << (s - 1) for s in signal.valid_signals() if s < signal.NSIG)
    assert int(masks["SigIgn"], 16) & usable == 0, masks
    assert int(masks["SigBlk"], 16) == 0, masks


def test_workdir(tree, svmgr, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    _, lines = run_oneshot(tree, svmgr, "pwd", workdir=str(wd))
    assert str(wd) in lines


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user")
def test_user_and_groups(tree, svmgr):
    _, lines = run_oneshot(
        tree,
        svmgr,
        'id; echo "home=$HOME user=$USER"',
        extra='[service.user]\nuser = "nobody"\ngroup = "nogroup"\nsupplementary-groups = ["daemon", "4"]\n',
    )
    ident = next(x for x in lines if x.startswith("uid="))
    assert ident.startswith("uid=65534(nobody) gid=65534(nogroup) groups=")
    groups = ident.split("groups=", 1)[1]
    assert "1(daemon)" in groups and "4(adm)" in groups
    assert "0(root)" not in groups
    assert "home=/nonexistent user=nobody" in lines


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user")
def test_user_gets_its_own_groups_by_default(tree, svmgr):
    _, lines = run_oneshot(tree, svmgr, "id -u; id -G", extra='[service.user]\nuser = "nobody"\n')
    assert lines[:2] == ["65534", "65534"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user")
def test_long_running_service_as_user(tree, svmgr):
    tree.simple("svc", extra='[service.user]\nuser = "nobody"\n')
    mgr = svmgr(args=BARE)
    pid = mgr.wait_state("svc", "running")["pid"]

    def ids():
        st = os.stat(f"/proc/{pid}")
        return st.st_uid, st.st_gid

    # (setpriv switches the user, then executes the service)
    mgr.wait_for(lambda: ids() == (65534, 65534), what="the service running as nobody")
    mgr.request("StopService", {"name": "svc"})
    assert not pid_alive(pid)


def test_executable_is_looked_up_in_path(tree, svmgr, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "my-daemon"
    prog.write_text("#!/bin/sh\necho my-daemon ran from $0\n")
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    path = tree.service(
        "probe",
        f'''
        [service]
        name = "probe"
        exec = ["my-daemon"]
        type = "oneshot"
        environment = {{ PATH = "{bindir}:/usr/bin:/bin" }}
        ''',
    )
    del path
    tree.service(
        "sleeper",
        """
        [service]
        name = "sleeper"
        exec = ["sleep", "1000"]
        """,
    )
    mgr = svmgr(args=BARE)
    assert mgr.wait_state("probe", ["exited", "failed"])["state"] == "exited"
    assert f"my-daemon ran from {prog}" in mgr.logs("probe")
    pid = mgr.wait_state("sleeper", "running")["pid"]
    assert os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "sleep"


def test_stdin_is_dev_null_and_both_outputs_are_captured(tree, svmgr):
    _, lines = run_oneshot(
        tree,
        svmgr,
        "readlink /proc/self/fd/0; cat; echo to-stdout; echo to-stderr >&2; printf no-newline",
    )
    assert lines[0] == "/dev/null"
    assert "to-stdout" in lines and "to-stderr" in lines
    assert lines[-1] == "no-newline"


def test_logs_keep_lines_across_restarts_and_can_be_tailed(tree, svmgr):
    tree.simple("chatty", "for i in 1 2 3 4 5; do echo line $i; done", type="oneshot")
    mgr = svmgr(args=BARE)
    mgr.wait_state("chatty", "exited")
    mgr.wait_logs("chatty", "line 5")
    assert [t for _, t in mgr.request("GetLogs", {"name": "chatty", "lines": 2})["lines"]] == [
        "line 4",
        "line 5",
    ]
    mgr.request("RestartService", {"name": "chatty"})
    mgr.wait_for(lambda: mgr.logs("chatty").count("line 5") == 2, what="second run's output")


def _fds(lines):
    """fd number -> target from ``ls -l /proc/self/fd``, without the
    directory ls itself opened to list it."""
    out = {}
    for line in lines:
        if " -> " not in line:
            continue
        left, target = line.split(" -> ", 1)
        fd = left.split()[-1]
        if fd.isdigit() and not target.startswith("/proc/"):
            out[int(fd)] = target
    return out


def test_no_file_descriptors_leak_into_services(tree, svmgr):
    # Other services (with their output pipes) and a control connection
    # exist while the probe runs.
    tree.simple("neighbour1")
    tree.simple("neighbour2", "while :; do echo tick; sleep 0.05; done")
    tree.simple("probe", "ls -l /proc/self/fd", type="oneshot", enabled=False)
    mgr = svmgr(args=BARE)
    mgr.wait_state("neighbour1", "running")
    mgr.wait_state("neighbour2", "running")
    with mgr.client() as sub:
        sub.request("Subscribe")
        mgr.request("StartService", {"name": "probe"})
        fds = _fds(mgr.wait_logs("probe", "->"))
    assert sorted(fds) == [0, 1, 2]
    assert fds[0] == "/dev/null"
    assert fds[1] == fds[2] and fds[1].startswith("pipe:")


def test_no_file_descriptors_leak_into_stop_exec(tree, svmgr, tmp_path):
    out = tmp_path / "fds"
    tree.simple(
        "svc",
        extra=f'[shutdown]\nstop-exec = ["/bin/sh", "-c", "ls -l /proc/self/fd > {out}; kill $MAINPID"]\n',
    )
    tree.simple("neighbour")
    mgr = svmgr(args=BARE)
    mgr.wait_state("svc", "running")
    mgr.wait_state("neighbour", "running")
    mgr.request("StopService", {"name": "svc"})
    fds = _fds(out.read_text().splitlines())
    assert sorted(fds) == [0, 1, 2]
    assert fds[1] == str(out)


def test_descriptors_the_manager_inherited_do_not_reach_services(tree, tmp_path):
    """Whoever started svmgr may have left descriptors open (inheritable);
    services never see them, on the posix_spawn path or Popen's."""
    import sys

    from dynamod.testing import Svmgr

    wrapper = tmp_path / "python-with-fd-7"
    wrapper.write_text(f"#!/bin/sh\nexec 7</etc/hostname\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    tree.simple("spawned", "ls -l /proc/self/fd", type="oneshot")
    tree.simple("in-dir", "ls -l /proc/self/fd", type="oneshot", workdir=str(tmp_path))
    mgr = Svmgr(tree.root, tmp_path / "run", args=BARE, python=wrapper)
    try:
        for name in ("spawned", "in-dir"):
            mgr.wait_state(name, "exited")
            fds = _fds(mgr.wait_logs(name, "->"))
            assert sorted(fds) == [0, 1, 2], (name, fds)
    finally:
        mgr.stop()
