"""Namespaces with real services: each one reports what it sees from inside
(its PID, /proc, hostname, links, ids, mounts) into a directory shared with
the test (under /run: a private /tmp would hide one under /tmp)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dynamod.testing import ConfigTree, Svmgr, pid_alive

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")

UP = "echo up > {d}/up; "


def wait_file(mgr: Svmgr, path: Path, timeout: float = 15.0) -> str:
    return mgr.wait_for(lambda: path.exists() and path.read_text(), timeout, f"{path}")


def service(tree: ConfigTree, name: str, script: str, namespace: str, extra: str = "", **kw: object) -> None:
    tree.simple(name, script + "; exec sleep 1000", extra=f"[namespace]\n{namespace}\n{extra}", **kw)


@pytest.fixture
def host_dir() -> Iterator[Callable[[str], Path]]:
    """Directories the test makes outside /run and /tmp (for bind mounts
    and writable paths), removed afterwards."""
    made: list[Path] = []

    def make(parent: str) -> Path:
        path = Path(parent) / f"dynamod-iso-{uuid.uuid4().hex[:8]}"
        path.mkdir(mode=0o755)
        made.append(path)
        return path

    yield make
    for p in made:
        shutil.rmtree(p, ignore_errors=True)


# ------------------------------------------------------------------- pid


def test_pid_namespace(tree: ConfigTree, svmgr: Callable[..., Svmgr], shared_dir: Path) -> None:
    d = shared_dir
    tree.simple(
        "boxed",
        f"echo $$ > {d}/pid; ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' ' > {d}/procs; "
        f"trap 'echo $$ > {d}/term; exit 0' TERM; {UP.format(d=d)}"
        "while :; do sleep 0.1; done",
        extra='[namespace]\nenable = ["pid"]\n',
    )
    mgr = svmgr()
    info = mgr.wait_state("boxed", "running")
    assert wait_file(mgr, d / "pid").strip() == "1"  # really PID 1 of its namespace
    wait_file(mgr, d / "up")
    inner = [int(p) for p in (d / "procs").read_text().split()]
    assert 1 in inner and max(inner) < 50  # its own /proc: only its own processes
    assert info["extra"]["namespaces"] == ["mnt", "pid"]
    mgr.request("StopService", {"name": "boxed"})
    final = mgr.wait_state("boxed", "stopped")
    assert (d / "term").read_text().strip() == "1"  # the stop signal reached it
    assert "killed" not in final["reason"]
    assert not pid_alive(info["pid"])


def test_pid_namespace_dies_with_its_init(tree: ConfigTree, tmp_path: Path, shared_dir: Path) -> None:
    """Without any cgroup (so no cgroup.kill helps): a daemon that left the
    service's process group dies with the namespace's PID 1."""
    d = shared_dir
    tree.simple(
        "boxed",
        f"setsid sh -c 'echo $$ > {d}/inner; exec sleep 1000' & "
        f"sleep 0.2; echo $! > {d}/started; exec sleep 1000",
        extra='[namespace]\nenable = ["pid"]\n',
    )
    env = {**os.environ, "DYNAMOD_CGROUP_ROOT": str(tmp_path)}  # not cgroup2: no cgroups
    with Svmgr(tree.root, tmp_path / "run", env=env) as mgr:
        info = mgr.wait_state("boxed", "running")
        wait_file(mgr, d / "started")
        # The daemon's PID as the host sees it: the process below unshare
        # (the namespace's init) below the spawned unshare.
        outer = _children(_children(info["pid"])[0])
        assert outer and all(pid_alive(p) for p in outer)
        mgr.request("StopService", {"name": "boxed"})  # SIGTERM: sleep as PID 1 ignores it
        final = mgr.wait_state("boxed", "stopped", timeout=30)
        assert "killed after stop timeout" in final["reason"]
        mgr.wait_for(lambda: not any(pid_alive(p) for p in outer), what="the namespace emptied")


def test_other_stop_signals_reach_pid_1(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                        shared_dir: Path) -> None:
    """unshare(1) stays the namespace's parent and dies of SIGQUIT (taking
    the service with it at once); the plugin signals the service instead."""
    d = shared_dir
    tree.simple(
        "quitter",
        f"trap 'echo quit > {d}/quit; sleep 0.3; exit 0' QUIT; {UP.format(d=d)}"
        "while :; do sleep 0.1; done",
        extra='[namespace]\nenable = ["pid"]\n[shutdown]\nstop-signal = "SIGQUIT"\n',
    )
    mgr = svmgr()
    mgr.wait_state("quitter", "running")
    wait_file(mgr, d / "up")
    mgr.request("StopService", {"name": "quitter"})
    final = mgr.wait_state("quitter", "stopped")
    assert (d / "quit").read_text().strip() == "quit"
    assert final["exit"] == "exited 0", final


def test_notify_readiness_from_a_pid_namespace(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    if shutil.which("systemd-notify") is None:
        pytest.skip("systemd-notify not installed")
    tree.simple(
        "notifier",
        "sleep 0.2; systemd-notify --ready; exec sleep 1000",
        type="notify",
        extra='[namespace]\nenable = ["pid"]\n[readiness]\ntimeout = "20s"\n',
    )
    mgr = svmgr()
    assert mgr.wait_state("notifier", ["running", "failed"], timeout=25)["state"] == "running"


def test_forking_in_a_pid_namespace_is_refused(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    tree.simple("forky", "sleep 1000 &", type="forking", pid_file="/run/forky.pid",
                extra='[namespace]\nenable = ["pid"]\n[restart]\npolicy = "temporary"\n')
    mgr = svmgr()
    info = mgr.wait_state("forky", "failed")
    assert "cannot run in a pid namespace" in info["reason"]


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


# ----------------------------------------------------------- net, uts, ipc


def test_net_namespace_has_only_loopback_up(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                            shared_dir: Path) -> None:
    d = shared_dir
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    probe = (
        f"python3 -c 'import socket; s=socket.socket(); s.settimeout(2); "
        f"print(s.connect_ex((\"127.0.0.1\", {port})))' > {d}/connect"
        if shutil.which("python3") else f"echo 111 > {d}/connect"
    )
    service(tree, "netted", f"ip -o link > {d}/links; {probe}; echo done > {d}/done", 'enable = ["net"]')
    try:
        mgr = svmgr()
        mgr.wait_state("netted", "running")
        wait_file(mgr, d / "done")
        links = (d / "links").read_text().splitlines()
        assert len(links) == 1, links
        assert ": lo:" in links[0] and ",UP" in links[0]
        # The host's loopback is not this one: the host's listener is unreachable.
        assert (d / "connect").read_text().strip() != "0"
    finally:
        listener.close()


def test_uts_namespace_hostname(tree: ConfigTree, svmgr: Callable[..., Svmgr], shared_dir: Path) -> None:
    before = socket.gethostname()
    service(tree, "named", f"hostname > {shared_dir}/hostname", 'hostname = "box.example.org"')
    mgr = svmgr()
    assert mgr.wait_state("named", "running")["extra"]["namespaces"] == ["uts"]
    assert wait_file(mgr, shared_dir / "hostname").strip() == "box.example.org"
    assert socket.gethostname() == before


def test_ipc_and_cgroup_namespaces(tree: ConfigTree, svmgr: Callable[..., Svmgr], shared_dir: Path) -> None:
    d = shared_dir
    service(tree, "private",
            f"readlink /proc/self/ns/ipc > {d}/ipc; cat /proc/self/cgroup > {d}/cgroup",
            'enable = ["ipc", "cgroup"]')
    mgr = svmgr()
    mgr.wait_state("private", "running")
    assert wait_file(mgr, d / "ipc").strip() != os.readlink("/proc/self/ns/ipc")
    # Its cgroup is the root of its cgroup namespace.
    assert "0::/" in wait_file(mgr, d / "cgroup").splitlines()


# ------------------------------------------------------------------- user


def test_user_namespace_root_is_nobody_on_the_host(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                                   shared_dir: Path) -> None:
    d = shared_dir
    service(tree, "userns",
            f"id -u > {d}/uid; cat /proc/self/uid_map > {d}/map; hostname > {d}/name; echo x > {d}/owned",
            'enable = ["user"]\nhostname = "inside"')
    mgr = svmgr()
    mgr.wait_state("userns", "running")
    assert wait_file(mgr, d / "uid").strip() == "0"
    wait_file(mgr, d / "owned")
    assert (d / "name").read_text().strip() == "inside"
    assert (d / "map").read_text().split() == ["0", "65534", "1"]
    assert (d / "owned").stat().st_uid == 65534


def test_user_namespace_with_a_range_and_a_service_user(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], shared_dir: Path
) -> None:
    d = shared_dir
    tree.service("ranged", f"""
        [service]
        name = "ranged"
        exec = ["/bin/sh", "-c", "id -u > {d}/uid; echo x > {d}/owned; exec sleep 1000"]
        [service.user]
        user = "1000"
        group = "1000"
        [namespace]
        enable = ["user", "pid"]
        uid-map = "0:200000:65536"
        gid-map = "0:200000:65536"
        private-tmp = true
        protect-system = "strict"
    """)
    mgr = svmgr()
    mgr.wait_state("ranged", "running")
    assert wait_file(mgr, d / "uid").strip() == "1000"
    wait_file(mgr, d / "owned")
    assert (d / "owned").stat().st_uid == 201000


def test_unmapped_service_user_is_a_clear_error(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    tree.service("unmapped", """
        [service]
        name = "unmapped"
        exec = ["/bin/sleep", "1000"]
        [service.user]
        user = "1000"
        [namespace]
        enable = ["user"]
        [restart]
        policy = "temporary"
    """)
    mgr = svmgr()
    info = mgr.wait_state("unmapped", "failed")
    assert "uid-map does not map uid 1000" in info["reason"]


# ------------------------------------------------------------------ mounts


def test_private_tmp(tree: ConfigTree, svmgr: Callable[..., Svmgr], shared_dir: Path) -> None:
    marker = Path(f"/tmp/dynamod-host-{uuid.uuid4().hex[:8]}")
    marker.write_text("host")
    inside = f"/tmp/dynamod-inside-{uuid.uuid4().hex[:8]}"
    try:
        service(tree, "tmpy", f"ls -a /tmp > {shared_dir}/tmp; touch {inside}; ls {inside} > {shared_dir}/made",
                "private-tmp = true")
        mgr = svmgr()
        assert mgr.wait_state("tmpy", "running")["extra"]["namespaces"] == ["mnt"]
        wait_file(mgr, shared_dir / "made")
        assert marker.name not in (shared_dir / "tmp").read_text().split()
        assert not os.path.exists(inside)  # its /tmp is its own
    finally:
        marker.unlink()


def test_protect_system_full(tree: ConfigTree, svmgr: Callable[..., Svmgr], shared_dir: Path,
                             host_dir: Callable[[str], Path]) -> None:
    d = shared_dir
    var = host_dir("/var/lib")
    probe = f"dynamod-probe-{uuid.uuid4().hex[:8]}"
    service(tree, "full", (
        f"touch /usr/{probe} 2> {d}/usr; touch /etc/{probe} 2> {d}/etc; "
        f"touch {var}/ok && echo ok > {d}/var; echo done > {d}/done"
    ), 'protect-system = "full"')
    mgr = svmgr()
    mgr.wait_state("full", "running")
    wait_file(mgr, d / "done")
    assert "Read-only file system" in (d / "usr").read_text()
    assert "Read-only file system" in (d / "etc").read_text()
    assert (d / "var").read_text().strip() == "ok"
    assert not os.path.exists(f"/usr/{probe}") and not os.path.exists(f"/etc/{probe}")
    assert os.access("/usr", os.W_OK)  # the host's /usr is untouched


def test_protect_system_strict_with_writable_paths(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                                   shared_dir: Path, host_dir: Callable[[str], Path]) -> None:
    d = shared_dir
    rw = host_dir("/var/lib")
    ro = host_dir("/var/lib")
    service(tree, "strict", (
        f"touch {ro}/x 2> {d}/ro; touch {rw}/x && echo ok > {d}/rw; "
        f"echo hi > /dev/null && echo ok > {d}/dev; echo done > {d}/done"
    ), f'protect-system = "strict"\nwritable-paths = ["{rw}"]')
    mgr = svmgr()
    mgr.wait_state("strict", "running")
    wait_file(mgr, d / "done")  # /run (where d is) stays writable
    assert "Read-only file system" in (d / "ro").read_text()
    assert (d / "rw").read_text().strip() == "ok" and (rw / "x").exists()
    assert (d / "dev").read_text().strip() == "ok"
    assert not (ro / "x").exists()


def test_bind_mounts(tree: ConfigTree, svmgr: Callable[..., Svmgr], shared_dir: Path,
                     host_dir: Callable[[str], Path]) -> None:
    d = shared_dir
    src_ro, src_rw = host_dir("/var/lib"), host_dir("/var/lib")
    (src_ro / "config").write_text("from the host\n")
    tgt_ro, tgt_rw = host_dir("/srv") if os.path.isdir("/srv") else host_dir("/var/lib"), host_dir("/var/lib")
    service(tree, "bound", (
        f"cat {tgt_ro}/config > {d}/seen; touch {tgt_ro}/new 2> {d}/ro; "
        f"echo written > {tgt_rw}/data && echo ok > {d}/rw; echo done > {d}/done"
    ), f'bind-mounts = [{{ source = "{src_ro}", target = "{tgt_ro}" }}, '
       f'{{ source = "{src_rw}", target = "{tgt_rw}", writable = true }}]')
    mgr = svmgr()
    mgr.wait_state("bound", "running")
    wait_file(mgr, d / "done")
    assert (d / "seen").read_text() == "from the host\n"  # the bind mount is there
    assert "Read-only file system" in (d / "ro").read_text()
    assert (src_rw / "data").read_text() == "written\n"  # written through to the source
    assert not (tgt_ro / "config").exists()  # the host's own view is unchanged


def _tmp_source(parent: str, made: list[Path]) -> Path:
    path = Path(parent) / f"dynamod-iso-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    path.chmod(0o777)  # a user namespace's root is nobody on the host
    made.append(path)
    return path


@pytest.fixture
def tmp_sources() -> Iterator[Callable[[str], Path]]:
    """Directories under the host's /tmp or /var/tmp: what a private /tmp
    hides from the service."""
    made: list[Path] = []
    yield lambda parent: _tmp_source(parent, made)
    for p in made:
        shutil.rmtree(p, ignore_errors=True)


@pytest.mark.parametrize("more", ["", 'enable = ["user", "pid"]\nprotect-system = "strict"'],
                         ids=["plain", "user-pid-strict"])
def test_bind_mount_sources_under_a_private_tmp(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                                shared_dir: Path, host_dir: Callable[[str], Path],
                                                tmp_sources: Callable[[str], Path], more: str) -> None:
    """private-tmp hides the host's /tmp and /var/tmp, and still a bind
    mount from under them works: a writable one from /var/tmp, a read-only
    one from /tmp, and one from /var/tmp onto a target inside the private
    /tmp (created there), while the host's /tmp stays hidden."""
    d = shared_dir
    cache, conf, spool = tmp_sources("/var/tmp"), tmp_sources("/tmp"), tmp_sources("/var/tmp")
    (conf / "config").write_text("from the host's /tmp\n")
    (spool / "job").write_text("queued\n")
    marker = conf.parent / f"dynamod-host-{uuid.uuid4().hex[:8]}"
    marker.write_text("host")
    cache_at, conf_at = host_dir("/var/lib"), host_dir("/var/lib")
    for p in (cache_at, conf_at):
        p.chmod(0o777)
    try:
        service(tree, "tmpbind", (
            f"echo written > {cache_at}/data && echo ok > {d}/rw; cat {conf_at}/config > {d}/seen; "
            f"touch {conf_at}/new 2> {d}/ro; cat /tmp/spool/job > {d}/spool; "
            f"ls /tmp > {d}/tmp; echo done > {d}/done"
        ), (
            f"private-tmp = true\n{more}\n"
            f'bind-mounts = [{{ source = "{cache}", target = "{cache_at}", writable = true }}, '
            f'{{ source = "{conf}", target = "{conf_at}" }}, '
            f'{{ source = "{spool}", target = "/tmp/spool" }}]'
        ))
        mgr = svmgr()
        mgr.wait_state("tmpbind", "running")
        wait_file(mgr, d / "done")
        assert (d / "rw").read_text().strip() == "ok"
        assert (cache / "data").read_text() == "written\n"  # through to the host's /var/tmp
        assert (d / "seen").read_text() == "from the host's /tmp\n"
        assert "Read-only file system" in (d / "ro").read_text()
        assert (d / "spool").read_text() == "queued\n"
        assert (d / "tmp").read_text().split() == ["spool"]  # its /tmp is its own
        assert mgr.status("tmpbind")["state"] == "running"
        assert not Path("/tmp/spool").exists()
    finally:
        marker.unlink()


def test_setup_leaves_the_services_descriptors_alone(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                                      shared_dir: Path, host_dir: Callable[[str], Path],
                                                      tmp_sources: Callable[[str], Path]) -> None:
    """The setup shell's descriptors (its report, the hidden tmp
    directories) are digits the service is not given: a readiness pipe on
    fd 9 still works, and none of the setup's is left open in the service."""
    d = shared_dir
    src, at = tmp_sources("/var/tmp"), host_dir("/var/lib")
    service(tree, "fds", f"ls /proc/$$/fd > {d}/fds; echo ready >&9",
            f'private-tmp = true\nbind-mounts = [{{ source = "{src}", target = "{at}" }}]',
            extra='[readiness]\ntype = "fd"\nfd = 9\n')
    mgr = svmgr()
    mgr.wait_state("fds", "running")
    fds = sorted(int(x) for x in wait_file(mgr, d / "fds").split())
    assert 9 in fds and not set(fds) & {3, 4, 5, 6, 7, 8}, fds


def test_a_failed_namespace_setup_says_what_failed(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                                   host_dir: Callable[[str], Path]) -> None:
    """A bind mount that cannot be made fails the start with the step and
    mount's own words in status (and dynamodctl status), not an exit code."""
    missing = f"/var/tmp/dynamod-missing-{uuid.uuid4().hex[:8]}"
    at = host_dir("/var/lib")
    nowhere = f"/var/lib/dynamod-nowhere-{uuid.uuid4().hex[:8]}"
    once = '[restart]\npolicy = "temporary"\n'
    service(tree, "nosrc", "true", f'private-tmp = true\nbind-mounts = [{{ source = "{missing}", target = "{at}" }}]',
            extra=once)
    service(tree, "notgt", "true", f'bind-mounts = [{{ source = "{at}", target = "{nowhere}", writable = true }}]',
            extra=once)
    mgr = svmgr()
    reason = mgr.wait_state("nosrc", "failed")["reason"]
    assert reason.startswith(f"namespace setup failed: bind mount {missing} on {at}: "), reason
    assert f"special device {missing} does not exist" in reason
    reason = mgr.wait_state("notgt", "failed")["reason"]
    assert reason.startswith(f"namespace setup failed: bind mount {at} on {nowhere}: "), reason
    assert "mount point does not exist" in reason
    out = subprocess.run([sys.executable, "-m", "dynamod.ctl.main", "--socket", mgr.socket, "status", "nosrc"],
                         capture_output=True, text=True, timeout=60).stdout
    assert f"namespace setup failed: bind mount {missing} on {at}: special device" in out, out
    assert any("namespace setup failed: bind mount" in line for line in mgr.logs("nosrc"))


def test_reference_postgresql_like_namespace(tree: ConfigTree, svmgr: Callable[..., Svmgr],
                                             shared_dir: Path, host_dir: Callable[[str], Path]) -> None:
    """The reference postgresql.toml's [namespace], with paths of this test."""
    d = shared_dir
    data = host_dir("/var/lib")
    service(tree, "pg", (
        f"echo $$ > {d}/pid; touch {data}/PG_VERSION && echo ok > {d}/data; "
        f"touch /etc/ssl/x 2> {d}/ssl; echo done > {d}/done"
    ), (
        'enable = ["pid", "mnt"]\nprivate-tmp = true\nprotect-system = "strict"\n'
        f'bind-mounts = [{{ source = "{data}", target = "{data}", writable = true }}, '
        '{ source = "/etc/ssl", target = "/etc/ssl", writable = false }]'
    ))
    mgr = svmgr()
    mgr.wait_state("pg", "running")
    wait_file(mgr, d / "done")
    assert (d / "pid").read_text().strip() == "1"
    assert (d / "data").read_text().strip() == "ok"
    assert "Read-only file system" in (d / "ssl").read_text()


# ------------------------------------------------------------ environment


def test_environment_passes_through_the_wrappers(tree: ConfigTree, svmgr: Callable[..., Svmgr]) -> None:
    """dash (the wrappers' shell) drops variables whose names are not shell
    names and adds PWD; the service still gets exactly its environment."""
    tree.service("envy", """
        [service]
        name = "envy"
        exec = ["/usr/bin/env"]
        type = "oneshot"
        environment = { "ODD-NAME" = "a b", PLAIN = "x y" }
        [namespace]
        enable = ["pid", "user"]
        hostname = "envy"
    """)
    mgr = svmgr()
    mgr.wait_state("envy", "exited")
    lines = mgr.wait_logs("envy", "PLAIN=")
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("["))
    assert env["ODD-NAME"] == "a b" and env["PLAIN"] == "x y"
    assert env["DYNAMOD_SERVICE"] == "envy"
    assert "PWD" not in env
    assert set(env) - {"ODD-NAME", "PLAIN", "DYNAMOD_SERVICE", "INVOCATION_ID", "PATH", "LANG", "LC_ALL", "TZ"} == set()
