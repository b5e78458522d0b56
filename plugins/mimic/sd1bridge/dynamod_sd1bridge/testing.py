"""Test harness for the bridge (and for mimic services that need systemd1,
such as hostnamectl's): a real dynamod-svmgr, a private dbus-daemon or none,
the bridge inside a :class:`~dynamod_mimic_common.testing.Namespace`, and the
real ``systemctl`` run there.

    stack = Stack(work_dir, Namespace(), ConfigTree(work_dir / "etc"), via="bus")
    stack.start(wait_running=("web",))
    stack.systemctl("status", "web")
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dynamod_mimic_common.testing import Namespace, PrivateBus

from dynamod.testing import ConfigTree, Svmgr, wait_until

POLICY = Path(__file__).with_name("data") / "org.freedesktop.systemd1.conf"


class Stack:
    """svmgr + bus + bridge; ``systemctl(...)`` runs the real one."""

    def __init__(self, work: Path, ns: Namespace, tree: ConfigTree, via: str) -> None:
        """``via``: "bus" (a private dbus-daemon with the shipped policy
        file; the bridge without private socket) or "private" (no
        dbus-daemon; root's systemctl uses /run/systemd/private)."""
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


def slow_oneshot(tree: ConfigTree, name: str, flag: Path) -> None:
    """A oneshot (not enabled) whose start job runs until ``flag`` exists:
    a job that stays in the job list as long as a test wants."""
    tree.service(name, f'''
        [service]
        name = "{name}"
        type = "oneshot"
        enabled = false
        exec = ["/bin/sh", "-c", "while [ ! -e {flag} ]; do sleep 0.05; done"]
    ''')


def settle(predicate, what: str, stack: Stack, timeout: float = 15.0):
    """wait_until with the bridge's and svmgr's logs on failure."""
    return wait_until(predicate, what, timeout, context=stack.log)
