"""The real systemctl against dynamod: a private dbus-daemon, a real
dynamod-svmgr with a few services, the bridge, and systemd 252's systemctl.

The bridge and systemctl run inside a private mount namespace whose
/run/systemd is a fresh tmpfs (``unshare -m`` holding it, ``nsenter`` into
it), so the machine's /run/systemd is never touched; the bus socket, the
svmgr control socket and the config tree live in a temp directory both
sides see."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamod.testing import ConfigTree, Svmgr, wait_until
from dynamod_mimic_common.testing import PrivateBus

POLICY = Path(__file__).parents[1] / "dynamod_sd1bridge" / "data" / "org.freedesktop.systemd1.conf"
NOBODY = 65534


class Namespace:
    """A mount namespace with its own tmpfs on /run/systemd."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             "mount -t tmpfs -o mode=0755 tmpfs /run/systemd && echo ok && exec sleep infinity"],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ok":
            raise RuntimeError("could not set up a mount namespace for /run/systemd")

    def argv(self, argv: list[str], user: int | None = None) -> list[str]:
        pre = ["nsenter", "-t", str(self.proc.pid), "-m", "--"]
        if user is not None:
            pre += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        return pre + argv

    def exists(self, path: str) -> bool:
        return subprocess.run(self.argv(["test", "-e", path])).returncode == 0

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


class Stack:
    """svmgr + bus + bridge; ``systemctl(...)`` runs the real one."""

    def __init__(self, work: Path, ns: Namespace, tree: ConfigTree, via: str) -> None:
        self.work = work
        self.ns = ns
        self.tree = tree
        self.via = via
        self.bus: PrivateBus | None = None
        self.bridge: subprocess.Popen[str] | None = None
        self.svmgr: Svmgr | None = None
        self.bus_address = f"unix:path={work}/no-bus"

    def start(self, wait_running: tuple[str, ...] = ()) -> Stack:
        self.svmgr = Svmgr(self.tree.root, self.work / "run")
        for name in wait_running:
            self.svmgr.wait_state(name, ("running", "exited"))
        if self.via == "bus":
            self.bus = PrivateBus(policy_dirs=(), policy_files=(POLICY,)).start()
            self.bus_address = self.bus.address
        self.start_bridge()
        return self

    def start_bridge(self) -> None:
        args = [sys.executable, "-m", "dynamod_sd1bridge", "--socket", self.svmgr.socket,
                "--config-dir", str(self.tree.root), "--log-level", "debug"]
        args += ["--no-private-socket"] if self.via == "bus" else ["--no-bus"]
        self.bridge_log = open(self.work / "bridge.log", "a")  # noqa: SIM115
        self.bridge = subprocess.Popen(self.ns.argv(args), env=self.env(), stdout=self.bridge_log,
                                       stderr=subprocess.STDOUT, text=True)
        if self.via == "bus":
            wait_until(lambda: self.owner() or self.check_bridge(), "the bridge owning systemd1",
                       context=self.log)
        else:
            wait_until(lambda: self.ns.exists("/run/systemd/private") or self.check_bridge(),
                       "the bridge's private socket", context=self.log)
        # The bridge answers once it has loaded svmgr's state.
        wait_until(lambda: self.systemctl("list-jobs").returncode == 0 or self.check_bridge(),
                   "the bridge answering", context=self.log)

    def check_bridge(self) -> bool:
        if self.bridge is not None and self.bridge.poll() is not None:
            raise RuntimeError(f"bridge exited {self.bridge.returncode}:\n{self.log()}")
        return False

    def stop_bridge(self) -> None:
        if self.bridge is not None and self.bridge.poll() is None:
            self.bridge.terminate()
            try:
                self.bridge.wait(15)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.bridge.wait()
        if self.bridge is not None:
            self.bridge_log.close()
            self.bridge = None

    def owner(self) -> bool:
        r = subprocess.run(["busctl", "--system", "status", "org.freedesktop.systemd1"],
                           env=self.env(), capture_output=True, text=True, timeout=30)
        return r.returncode == 0

    def log(self) -> str:
        try:
            text = (self.work / "bridge.log").read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        return f"--- bridge ---\n{text[-6000:]}\n--- svmgr ---\n{self.svmgr.log()[-4000:] if self.svmgr else ''}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "SYSTEMD_"))}
        env.update(DBUS_SYSTEM_BUS_ADDRESS=self.bus_address, SYSTEMD_PAGER="cat",
                   SYSTEMD_COLORS="0", SYSTEMD_LOG_COLOR="0", LC_ALL="C.UTF-8",
                   SYSTEMD_IGNORE_CHROOT="1", COLUMNS="200")
        return env

    def systemctl(self, *args: str, user: int | None = None,
                  timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.ns.argv(["systemctl", *args], user), env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        self.stop_bridge()
        if self.svmgr is not None:
            try:
                self.svmgr.stop()
            finally:
                if self.svmgr.proc is not None and self.svmgr.proc.poll() is None:
                    self.svmgr.proc.kill()
        if self.bus is not None:
            self.bus.stop()


@pytest.fixture
def work() -> Iterator[Path]:
    # World-traversable (pytest's tmp dirs are 0700): systemctl runs as
    # nobody in some tests and must reach the bus socket.
    path = Path(tempfile.mkdtemp(prefix="sd1-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ns() -> Iterator[Namespace]:
    n = Namespace()
    yield n
    n.close()


@pytest.fixture
def tree(work: Path) -> ConfigTree:
    return ConfigTree(work / "etc")


@pytest.fixture(params=["bus", "private"])
def via(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def stack(work: Path, ns: Namespace, tree: ConfigTree, via: str) -> Iterator[Stack]:
    s = Stack(work, ns, tree, via)
    yield s
    s.stop()


@pytest.fixture
def bus_stack(work: Path, ns: Namespace, tree: ConfigTree) -> Iterator[Stack]:
    s = Stack(work, ns, tree, "bus")
    yield s
    s.stop()


def settle(predicate, what: str, stack: Stack, timeout: float = 15.0):
    return wait_until(predicate, what, timeout, context=stack.log)


