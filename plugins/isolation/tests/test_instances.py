"""One manager, one cgroup tree: real dynamod-svmgr processes, daemonized
as an administrator would (``setsid -f``: their parent is PID 1, as the
system instance's is), with services of the same names. Each stops only its
own; a manager that would take a live one's tree takes its own; a dead
one's tree is reused by its successor or swept once empty.

Hermetic: every manager of a test lives in a cgroup of the test's own, and
the daemonized ones in a cgroup namespace rooted there with cgroup2 mounted
afresh, so even ``MOUNT/dynamod`` — the system instance's tree — is the
test's, never the machine's."""

from __future__ import annotations

import ast
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dynamod_isolation import cgroups, wrappers

from dynamod.testing import ConfigTree, Svmgr, pid_alive, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not cgroups.cgroup2_mounts(),
                                reason="needs root and a cgroup2 mount")

MOUNT = cgroups.preferred_mount(cgroups.cgroup2_mounts()) or ""
# A service of the same name in every manager, leaving a double-forked
# leftover behind (which only a whole-cgroup kill reaches), and one that
# ignores the stop signal (killed by cgroup.kill after its stop timeout).
LEAKY = "(setsid sleep 1000 & echo $! > {out}/leftover-$DYNAMOD_SERVICE); exec sleep 1000"
STUBBORN = "trap '' TERM; echo up > {out}/stubborn-up; while :; do sleep 0.1; done"


@pytest.fixture
def testcg(purge_cgroup: Callable[[str], None]) -> Iterator[str]:
    path = os.path.join(MOUNT, f"dynamod-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    yield path
    purge_cgroup(path)


def services(tree: ConfigTree, out: Path, stubborn: bool = True) -> None:
    tree.simple("x", LEAKY.format(out=out))
    if stubborn:
        tree.simple("stubborn", STUBBORN.format(out=out), extra='[shutdown]\nstop-timeout = "1s"\n')


class Daemon(Svmgr):
    """A dynamod-svmgr started with ``setsid -f`` in a cgroup namespace
    rooted at ``cgroup`` (cgroup2 mounted afresh), so that its parent is
    PID 1. ``runtime_dir=None``: the system's /run/dynamod, in a /run of its
    own (a tmpfs in its mount namespace; reached from here through
    /proc/PID/root)."""

    def __init__(self, cgroup: str, config: Path, work: Path, runtime_dir: Path | None) -> None:
        work.mkdir(parents=True)
        if runtime_dir is not None:
            runtime_dir.mkdir(parents=True)
        pidfile, inside = work / "pid", str(runtime_dir or "/run/dynamod")
        daemon = ('echo $$ > "$1"; log=$2; shift 2; exec "$@" > "$log" 2>&1')
        setup = (f"umount -l {shlex.quote(MOUNT)} && mount -t cgroup2 cgroup2 {shlex.quote(MOUNT)}\n"
                 + ("" if runtime_dir else "mount -t tmpfs -o mode=755 tmpfs /run && mkdir /run/dynamod\n")
                 + 'exec setsid -f /bin/sh -c "$0" sh "$@"')
        argv = [wrappers.tool("unshare"), "--cgroup", "--mount", "--propagation", "private", "--",
                "/bin/sh", "-ec", setup, daemon, str(pidfile), f"{inside}/svmgr.log",
                sys.executable, "-m", "dynamod.svmgr.main", "--config-dir", str(config), "--runtime-dir", inside]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
        script = f'echo $$ > {shlex.quote(cgroup)}/cgroup.procs && exec "$@"'
        subprocess.run(["/bin/sh", "-c", script, "sh", *argv], env=env, check=True, timeout=30)
        self.daemon_pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the pid file"))
        where = runtime_dir or Path(f"/proc/{self.daemon_pid}/root/run/dynamod")
        super().__init__(config, where, start=False)
        wait_until(lambda: os.path.exists(self.socket), "the control socket", context=self.log)

    @property
    def pid(self) -> int:
        return self.daemon_pid

    def ppid(self) -> int:
        stat = Path(f"/proc/{self.daemon_pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[1])

    def stop(self, timeout: float = 30.0) -> int:
        if pid_alive(self.daemon_pid):
            os.kill(self.daemon_pid, signal.SIGTERM)
            wait_until(lambda: not pid_alive(self.daemon_pid), "the daemon's exit", timeout, context=self.log)
        return 0


@pytest.fixture
def daemons(tmp_path: Path, testcg: str) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(config: Path, runtime_dir: Path | None) -> Daemon:
        d = Daemon(testcg, config, tmp_path / f"daemon{len(started)}", runtime_dir)
        started.append(d)
        return d

    yield start
    for d in started:
        try:
            d.stop()
        except Exception:
            os.kill(d.daemon_pid, signal.SIGKILL)


def leftover(out: Path, name: str, mgr: Svmgr) -> int:
    path = out / f"leftover-{name}"
    return int(mgr.wait_for(lambda: path.exists() and path.read_text().strip(), what=str(path)))


@pytest.mark.parametrize("system_like", [False, True], ids=["own-runtime-dirs", "both-on-run-dynamod"])
def test_two_daemonized_managers_stop_only_their_own(tmp_path: Path, daemons: Callable[..., Daemon],
                                                     system_like: bool) -> None:
    """The attack: two managers started with ``setsid -f`` used to share
    ``.../dynamod``, and ``stop x`` on one killed the other's ``x``. Now
    each has a tree of its own; with both on /run/dynamod (each in a /run
    of its own: the very picture of a system instance), the first takes
    ``dynamod`` and the second, finding it held, one of its own."""
    mgrs, outs = [], []
    for i in range(2):
        out = tmp_path / f"out{i}"
        out.mkdir()
        outs.append(out)
        tree = ConfigTree(tmp_path / f"etc{i}")
        services(tree, out)
        mgr = daemons(tree.root, None if system_like else tmp_path / f"run{i}")
        mgr.wait_state("x", "running")
        mgrs.append(mgr)
    a, b = mgrs
    assert a.ppid() == 1 and b.ppid() == 1  # daemons, as the system instance is a child of PID 1
    paths = [m.status("x")["extra"]["cgroup"] for m in mgrs]
    trees = [os.path.dirname(p) for p in paths]
    assert trees[0] != trees[1], paths
    if system_like:
        assert trees[0] == os.path.join(MOUNT, "dynamod")
        assert re.fullmatch(r"dynamod-[0-9a-f]{12}", os.path.basename(trees[1])), trees
        assert f"belongs to another running dynamod-svmgr (pid {a.pid})" in b.log()
    else:
        assert all(re.fullmatch(r"dynamod-[0-9a-f]{12}", os.path.basename(t)) for t in trees), trees

    pids = [m.status("x")["pid"] for m in mgrs]
    left = [leftover(out, "x", m) for out, m in zip(outs, mgrs, strict=True)]
    a.request("StopService", {"name": "x"})
    a.wait_state("x", "stopped")
    a.wait_for(lambda: not pid_alive(left[0]), what="a's leftover killed with its x")
    assert not pid_alive(pids[0])
    info = b.status("x")
    assert info["state"] == "running" and info["pid"] == pids[1] and pid_alive(pids[1])
    assert pid_alive(left[1]), "b's leftover was killed by a's stop"
    assert [t[2] for t in b.transitions("x")] == ["pending", "starting", "waiting-ready", "running"]  # no restart

    for out, m in zip(outs, mgrs, strict=True):
        m.wait_for(lambda out=out: (out / "stubborn-up").exists(), what="stubborn up")
        m.wait_state("stubborn", "running")
    stubborn = [m.status("stubborn")["pid"] for m in mgrs]
    b.request("StopService", {"name": "stubborn"})  # SIGKILL through cgroup.kill after 1 s
    b.wait_state("stubborn", "stopped")
    assert not pid_alive(stubborn[1])
    info = a.status("stubborn")
    assert info["state"] == "running" and info["pid"] == stubborn[0] and pid_alive(stubborn[0])

    b.request("StopService", {"name": "x"})
    b.wait_state("x", "stopped")
    b.wait_for(lambda: not pid_alive(left[1]), what="b's leftover killed with its x")
    for m in mgrs:
        m.stop()
    for t in trees:  # each tree goes with its manager (the system one stays)
        assert not os.path.exists(t) or os.path.basename(t) == "dynamod"


def in_cgroup(cgroup: str, tmp_path: Path) -> Path:
    """An interpreter for Svmgr(python=...) that runs the manager in ``cgroup``
    (so its per-instance tree is made under it, the test's)."""
    path = tmp_path / "python-in-cgroup"
    path.write_text(f'#!/bin/sh\necho $$ > {shlex.quote(cgroup)}/cgroup.procs || exit 1\n'
                    f'exec {shlex.quote(sys.executable)} "$@"\n')
    path.chmod(0o755)
    return path


def manager(tree: ConfigTree, run: Path, python: Path, **env: str) -> Svmgr:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    return Svmgr(tree.root, run, env={**full, **env}, python=python)


def test_an_explicit_tree_held_by_a_live_manager_is_refused(tmp_path: Path, testcg: str) -> None:
    """DYNAMOD_CGROUP_ROOT naming another live manager's tree: the second
    manager's services do not start (with the reason), the first's are
    untouched, during and after."""
    tree = ConfigTree(tmp_path / "etc")
    services(tree, tmp_path, stubborn=False)
    python = in_cgroup(testcg, tmp_path)
    shared = os.path.join(testcg, "shared")
    with manager(tree, tmp_path / "a", python, DYNAMOD_CGROUP_ROOT=shared) as a:
        pid = a.wait_state("x", "running")["pid"]
        with manager(tree, tmp_path / "b", python, DYNAMOD_CGROUP_ROOT=shared) as b:
            reason = b.wait_state("x", "failed")["reason"]
            assert f"cgroup tree {shared} belongs to another running dynamod-svmgr (pid {a.pid})" in reason
            assert "DYNAMOD_CGROUP_ROOT must name a tree of this manager's own" in reason
        info = a.status("x")
        assert info["state"] == "running" and info["pid"] == pid and pid_alive(pid)
        assert os.path.isdir(info["extra"]["cgroup"])


def test_stale_trees_are_reused_by_the_successor_or_swept_once_empty(tmp_path: Path, testcg: str) -> None:
    """Managers killed with SIGKILL leave their trees behind. A populated
    one is left alone by other managers (its processes are not theirs); the
    next manager of the same runtime directory takes it over (the lock is
    free) and its leftover goes when that service is stopped. An empty one
    is swept by the next manager to start, but never a live manager's, even
    an idle one's."""
    tree = ConfigTree(tmp_path / "etc")
    services(tree, tmp_path, stubborn=False)
    idle = ConfigTree(tmp_path / "etc-idle")
    idle.simple("w", "exec sleep 1000")
    python = in_cgroup(testcg, tmp_path)

    killed = manager(tree, tmp_path / "a", python)
    orphan = killed.wait_state("x", "running")["pid"]
    held = os.path.dirname(killed.status("x")["extra"]["cgroup"])
    killed.proc.kill()  # type: ignore[union-attr]
    killed.proc.wait()  # type: ignore[union-attr]

    with manager(idle, tmp_path / "d", python) as live:
        live.wait_state("w", "running")
        live_tree = os.path.dirname(live.status("w")["extra"]["cgroup"])
        live.request("StopService", {"name": "w"})
        live.wait_state("w", "stopped")  # idle now: an empty tree, but held
        live.wait_for(lambda: not os.path.exists(os.path.join(live_tree, "w.service")), what="w removed")

        empty = manager(idle, tmp_path / "c", python)
        empty.wait_state("w", "running")
        empty_tree = os.path.dirname(empty.status("w")["extra"]["cgroup"])
        empty.request("StopService", {"name": "w"})
        empty.wait_state("w", "stopped")
        empty.wait_for(lambda: not os.path.exists(os.path.join(empty_tree, "w.service")), what="w removed")
        empty.proc.kill()  # type: ignore[union-attr]
        empty.proc.wait()  # type: ignore[union-attr]
        assert os.path.isdir(empty_tree)

        with manager(idle, tmp_path / "e", python) as sweeper:
            sweeper.wait_state("w", "running")
            assert f"removed {empty_tree}, left behind by a manager that is gone" in sweeper.log()
            assert not os.path.exists(empty_tree)
            assert os.path.isdir(live_tree)  # idle, but alive
            assert os.path.isdir(held) and pid_alive(orphan)  # populated: not the sweeper's to kill

        with manager(tree, tmp_path / "a", python) as successor:
            info = successor.wait_state("x", "running")
            assert os.path.dirname(info["extra"]["cgroup"]) == held
            assert "has processes of a previous manager of this runtime directory" in successor.log()
            assert pid_alive(orphan) and info["pid"] != orphan
            successor.request("StopService", {"name": "x"})
            successor.wait_state("x", "stopped")
            successor.wait_for(lambda: not pid_alive(orphan), what="the orphan stopped with its service")
        assert not os.path.exists(held)


def test_claims_are_exclusive_and_die_with_their_holder(testcg: str) -> None:
    from dynamod_isolation import instance

    path = os.path.join(testcg, "t")
    fd = instance.claim(path)
    with pytest.raises(instance.TreeInUse) as err:
        instance.claim(path)
    assert err.value.holder == os.getpid()
    assert str(err.value) == f"cgroup tree {path} belongs to another running dynamod-svmgr (pid {os.getpid()})"
    instance.release(fd)
    instance.release(instance.claim(path))  # free again once its holder let go
    # A holder that dies (SIGKILL: no clean-up at all) lets go too.
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from dynamod_isolation import instance; "
                               f"instance.claim({path!r}); print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with pytest.raises(instance.TreeInUse):
        instance.claim(path)
    holder.kill()
    holder.wait()
    instance.release(instance.claim(path))


def test_a_manager_on_a_live_managers_derived_tree_picks_its_own(tmp_path: Path, testcg: str) -> None:
    """Two managers computing the same tree (one runtime directory, one PID
    namespace): the second, finding it held, takes the one with its PID in
    the name, and says so."""
    code = f"""
import os
with open({os.path.join(testcg, "cgroup.procs")!r}, "w") as f:
    f.write(str(os.getpid()))
from dynamod_isolation.runtime import Isolation
said = []
first, second = Isolation(log=said.append), Isolation(log=said.append)
print(first.get_tree({str(tmp_path)!r}).path)
print(second.get_tree({str(tmp_path)!r}).path)
print([line for line in said if "belongs to" in line])
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    first, second, lines = out.stdout.splitlines()
    said = ast.literal_eval(lines)[0]
    assert os.path.dirname(first) == os.path.dirname(second) == testcg
    assert first != second and re.fullmatch(r"dynamod-[0-9a-f]{12}", os.path.basename(second))
    pid = re.search(r"pid (\d+)\)", said)
    assert said.startswith(f"cgroup tree {first} belongs to another running dynamod-svmgr (pid ") and pid, said
    assert said.endswith(f": using {second} instead")
