"""The plugin's runtime in-process, against a stand-in cgroup directory: the
controller files a machine without controllers cannot show (limits written,
memory.events watched for OOM kills), and the wrapper chain it builds."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dynamod_isolation import nssetup, wrappers
from dynamod_isolation.cgroups import Tree, unescape_mount_path
from dynamod_isolation.options import parse_cgroup, parse_namespace
from dynamod_isolation.runtime import Isolation, Running

from dynamod.api import SpawnSpec


@dataclass
class Config:
    name: str
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    type: str = "simple"


class FakeService:
    """Just what the plugin uses of a ServiceContext."""

    def __init__(self, name: str, runtime_dir: str, sections: dict | None = None) -> None:
        self.name = name
        self.config = Config(name, sections or {})
        self.runtime_dir = runtime_dir
        self.main_pid: int | None = None
        self.lines: list[str] = []
        self.failed: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)

    def fail(self, reason: str) -> None:
        self.failed.append(reason)


def fake_tree(tmp_path: Path, controllers: set[str]) -> tuple[Isolation, Tree, list[str]]:
    said: list[str] = []
    iso = Isolation(log=said.append)
    tree = Tree(str(tmp_path), str(tmp_path / "tree"), controllers=controllers)
    os.makedirs(tree.path)
    iso.tree, iso.tree_checked = tree, True
    return iso, tree, said


def test_limits_and_their_defaults_are_written(tmp_path: Path) -> None:
    _iso, tree, _ = fake_tree(tmp_path, {"memory", "pids", "cpu"})
    path = tree.create("db")
    for f in ("memory.max", "memory.high", "cpu.max", "cpu.weight", "pids.max"):
        Path(path, f).touch()  # cgroupfs makes them; the plugin never creates files
    values, _ = parse_cgroup({"memory-max": "512M", "cpu-max": "50%", "io-weight": 300})
    failed = tree.apply(path, values)
    files = {f: Path(path, f).read_text() for f in os.listdir(path)}
    assert files == {
        "memory.max": str(512 << 20),
        "memory.high": "max",  # not configured: the default, so a reload forgets old ones
        "cpu.max": "50000 100000",
        "cpu.weight": "100",
        "pids.max": "max",
    }
    assert set(failed) == {"io-weight"} and "no io controller" in failed["io-weight"]


def test_oom_kill_fails_a_live_service(tmp_path: Path) -> None:
    iso, tree, said = fake_tree(tmp_path, {"memory"})
    svc = FakeService("hog", str(tmp_path))
    path = tree.create("hog")
    events = Path(path, "memory.events")
    events.write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n")
    Path(path, "memory.current").write_text("1234\n")

    async def scenario() -> None:
        run = Running("hog", cgroup=path)
        iso.running["hog"] = run
        iso.started(svc, 4242)
        assert run.oom_watch is not None
        events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15  # a hang guard, not a speed limit
        while not svc.failed and loop.time() < deadline:
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert svc.failed == ["oom-killed"]
    assert any("oom-killed" in line for line in svc.lines)
    assert any("hog: oom-killed" in line for line in said)
    status = iso.status(svc)
    assert status["oom-kills"] == 1 and status["memory-current"] == 1234
    iso.inotify.close()


def test_oom_kill_seen_only_at_exit_is_still_counted(tmp_path: Path) -> None:
    """The OOM victim was the main process and its exit came first: the
    count still rises (the kernel counts before the victim dies), and the
    service is not failed a second time."""
    iso, tree, _ = fake_tree(tmp_path, {"memory"})
    svc = FakeService("hog", str(tmp_path))
    path = tree.create("hog")
    Path(path, "memory.events").write_text("oom_kill 2\n")
    iso.running["hog"] = Running("hog", cgroup=path, oom_seen=1)
    Path(path, "cgroup.events").write_text("populated 0\n")
    iso.stopped(svc)
    assert svc.failed == []
    assert iso.history["hog"].oom_kills == 1
    assert iso.status(svc) == {"oom-kills": 1, "last-oom": iso.history["hog"].last_oom}


@pytest.mark.parametrize("hop", [True, False], ids=["hop", "shell-join"])
def test_prepare_builds_the_chain_in_order(tmp_path: Path, hop: bool) -> None:
    """The cgroup is joined at fork time (the manager hops in) or, with
    $DYNAMOD_CGROUP_JOIN=shell, by a first shell step; the rest of the
    chain is the same either way."""
    iso, tree, _ = fake_tree(tmp_path, set())
    iso.join = "hop" if hop else "shell"
    svc = FakeService(
        "web",
        str(tmp_path),
        {"namespace": {"enable": ["pid", "user", "ipc"], "hostname": "web", "private-tmp": True}},
    )
    spec = SpawnSpec(argv=["/usr/bin/web"], env={"PATH": "/bin", "A.B": "1"},
                     wrapper=["/usr/bin/setpriv", "--reuid=0", "--regid=0", "--init-groups", "--"])
    iso.prepare(svc, spec)
    try:
        w = spec.wrapper
        cut = [i for i, a in enumerate(w) if a in ("/bin/sh", wrappers.tool("unshare"), wrappers.tool("setpriv"),
                                                    wrappers.tool("env"))]
        steps = [w[i] for i in cut]
        rest = [wrappers.tool("unshare"), "/bin/sh", wrappers.tool("setpriv"),
                "/bin/sh", wrappers.tool("env"), "/usr/bin/setpriv"]
        procs = f"{tree.path}/web.service/cgroup.procs"
        if hop:
            assert steps == rest
            assert [h.procs for h in spec.around_fork] == [procs]
        else:
            assert steps == ["/bin/sh", *rest]
            assert w[cut[0] + 4] == procs
            assert spec.around_fork == []
            cut = cut[1:]
        assert "--pid" in w and "--user" in w and "--ipc" in w and "--keep-caps" in w
        assert w[cut[4] + 1] == "A.B=1"  # the name dash would drop
        assert w[-5:] == ["/usr/bin/setpriv", "--reuid=0", "--regid=0", "--init-groups", "--"]
    finally:
        iso.stopped(svc)
    assert not os.path.exists(os.path.join(str(tmp_path), "isolation", "web.userns-up"))


def test_mount_paths_are_quoted(tmp_path: Path) -> None:
    odd = tmp_path / "a dir; with 'quotes' $(x)"
    odd.mkdir()
    (odd / "f").write_text("ok")
    target = tmp_path / "tgt"
    target.mkdir()
    opts, problems = parse_namespace({"bind-mounts": [{"source": str(odd), "target": str(target)}]})
    assert problems == []
    script = nssetup.setup_script(opts, mounts=nssetup.mount_points())
    assert shlex.quote(str(odd)) in script
    if os.geteuid() != 0:
        return
    out = subprocess.run(
        [wrappers.tool("unshare"), "--mount", "--propagation", "private", "--", "/bin/sh", "-ec",
         script, "sh", "/bin/cat", str(target / "f")],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0 and out.stdout == "ok", out.stderr
    assert not (target / "f").exists()


@pytest.mark.parametrize(("raw", "path"), [("/a\\040b", "/a b"), ("/x\\134y", "/x\\y"), ("/plain", "/plain")])
def test_mountinfo_unescape(raw: str, path: str) -> None:
    assert unescape_mount_path(raw) == path


def test_strict_leaves_dev_proc_sys_run_writable() -> None:
    opts, _ = parse_namespace({"protect-system": "strict", "writable-paths": ["/var/lib/x"]})
    mounts = [("/", "rw,relatime"), ("/proc", "rw,nosuid"), ("/sys/fs/cgroup", "rw"), ("/home", "rw,nodev"),
              ("/boot", "ro,relatime"), ("/var/lib/x", "rw")]
    script = nssetup.setup_script(opts, mounts=mounts)
    assert "--rbind /run /run" in script  # not a mount point here: made one
    assert "remount,bind,ro,relatime /\n" in script + "\n"
    assert "remount,bind,ro,nodev /home" in script
    for kept in ("/proc", "/sys/fs/cgroup", "/boot", "/var/lib/x"):
        assert f"ro {kept}" not in script and f"relatime {kept}\n" not in script


def test_exit_reason_names_an_oom_kill(tmp_path: Path) -> None:
    """The dynamod_service_exit_reason hook: asked before the state change
    (see docs/isolation.md, "OOM kills")."""
    iso, tree, _ = fake_tree(tmp_path, {"memory"})
    svc = FakeService("hog", str(tmp_path))
    path = tree.create("hog")
    events = Path(path, "memory.events")
    events.write_text("oom_kill 0\n")
    iso.running["hog"] = Running("hog", cgroup=path)
    assert iso.exit_reason(svc, 9) is None
    events.write_text("oom_kill 1\n")
    assert iso.exit_reason(svc, 9) == "oom-killed"
    assert iso.exit_reason(svc, 9) is None  # counted once
    assert iso.history["hog"].oom_kills == 1 and svc.failed == []


def test_join_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setenv("DYNAMOD_CGROUP_JOIN", "hopp")
    assert Isolation(log=said.append).join == "auto"
    assert said == ["ignoring DYNAMOD_CGROUP_JOIN='hopp' (expected auto, hop or shell); using auto"]
    for value in ("hop", "shell", "auto"):
        monkeypatch.setenv("DYNAMOD_CGROUP_JOIN", value)
        assert Isolation(log=said.append).join == value
    assert len(said) == 1


def test_auto_hops_only_on_a_favordynmods_mount(tmp_path: Path) -> None:
    """The mount options decide; the last mount on a path is the one seen."""
    from dynamod_isolation.cgroups import mount_options

    mounts = tmp_path / "mounts"
    mounts.write_text(
        "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"
        "tmpfs /run tmpfs rw,favordynmods 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime,nsdelegate 0 0\n"
        "cgroup2 /sys/fs/cgroup cgroup2 rw,relatime,nsdelegate,favordynmods 0 0\n"
    )
    assert "favordynmods" in mount_options("/sys/fs/cgroup", str(mounts))
    assert "favordynmods" not in mount_options("/sys/fs/cgroup/unified", str(mounts))
    assert mount_options("/run", str(mounts)) == set()  # not cgroup2


# ------------------------------------------------------- the setup report


def run_setup(script: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [wrappers.tool("unshare"), "--mount", "--propagation", "private", "--", *wrappers.setup_step(script),
         *argv], capture_output=True, text=True, timeout=30,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")
def test_the_report_names_the_failed_step_and_mounts_words(tmp_path: Path) -> None:
    missing = f"/var/tmp/dynamod-missing-{os.getpid()}"
    opts, _ = parse_namespace({"private-tmp": True, "bind-mounts": [{"source": missing, "target": str(tmp_path)}]})
    fds = nssetup.choose_fds(opts, set())
    assert fds.report == 9 and fds.tmp == {"/var/tmp": 8}
    report = nssetup.Report(str(tmp_path / "iso"), "svc")
    report.hidden = {fd: d for d, fd in fds.tmp.items()}
    script = nssetup.setup_script(opts, mounts=nssetup.mount_points(), fds=fds, prologue=report.opener(9))
    assert run_setup(script, "/bin/true").returncode == 1
    assert report.reason() == (f"bind mount {missing} on {tmp_path}: special device {missing} does not exist.")
    report.close()
    assert not os.path.exists(report.path)

    good = nssetup.Report(str(tmp_path / "iso"), "svc")
    opts, _ = parse_namespace({"private-tmp": True})
    script = nssetup.setup_script(opts, fds=nssetup.choose_fds(opts, set()), prologue=good.opener(9))
    out = run_setup(script, "/bin/sh", "-c", "ls /proc/$$/fd; exit 3")
    assert out.returncode == 3 and out.stdout.split() == ["0", "1", "2"], out  # nothing of the setup's left
    assert good.reason() is None  # the setup finished: the exit was the service's own
    assert good.fd == -1  # let go at "@ok"
    good.close()

    never = nssetup.Report(str(tmp_path / "iso"), "never")
    assert never.reason() == "it exited before the setup inside its namespaces ran (see its log)"
    never.close()


def test_setup_descriptors_avoid_the_services_own() -> None:
    opts, _ = parse_namespace({"private-tmp": True, "bind-mounts": [
        {"source": "/tmp/a", "target": "/srv/a"}, {"source": "/var/tmp/b", "target": "/srv/b"}]})
    taken = nssetup.taken_fds({"DYNAMOD_READY_FD": "9", "LISTEN_FDS": "2"}, [7])
    assert taken == {3, 4, 7, 9}
    fds = nssetup.choose_fds(opts, taken)
    assert fds.report == 8 and fds.tmp == {"/tmp": 6, "/var/tmp": 5}
    script = nssetup.setup_script(opts, fds=fds)
    assert "exec 6</tmp 5</var/tmp" in script and "/proc/self/fd/6/a" in script and "exec 8>&- 6>&- 5>&-" in script
    # No digit left: no report, sources by their paths (what mount then says is the log's).
    none = nssetup.choose_fds(opts, set(range(3, 10)))
    assert none.report is None and none.tmp == {}
    script = nssetup.setup_script(opts, fds=none)
    assert "2>&" not in script and "/proc/self/fd" not in script and "--rbind -o" in script
