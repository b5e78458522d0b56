"""The daemon and the real clients in a private mount + UTS namespace.

``Machine`` holds a namespace (``unshare --mount --uts`` around a sleeping
process; every command joins it with ``nsenter``), in which /run/systemd is
a private tmpfs with /run/systemd/system (the clients' "booted with
systemd" check) and the hostname is the test's. The real machine's
hostname, /run and /etc are never touched: the daemon works on a --root
tree. The bus is a private dbus-daemon whose only policy is the one this
distribution ships (plus systemd1's, for the stand-in or the real bridge).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from dynamod_mimic_common.testing import PrivateBus

from dynamod.testing import wait_until

HERE = Path(__file__).parent
SD1_POLICY = "/usr/share/dbus-1/system.d/org.freedesktop.systemd1.conf"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
START_HOSTNAME = "dynamod-test"


class Machine:
    def __init__(self, work: Path, root: Path, policy: Path, env: dict[str, str] | None = None,
                 service_dirs: tuple[Path, ...] = ()) -> None:  # fmt: skip
        self.work = work
        self.root = root
        self.bus = PrivateBus(policy_dirs=(), policy_files=(policy, SD1_POLICY),
                              service_dirs=service_dirs).start()  # fmt: skip
        self.env = {**self.bus.env(), "SYSTEMD_PAGER": "cat", "SYSTEMD_COLORS": "0",
                    "LC_ALL": "C.UTF-8", "DYNAMOD_SOCKET": str(work / "no-svmgr.sock"),
                    **(env or {})}  # fmt: skip
        self.procs: list[subprocess.Popen[bytes]] = []
        self.holder: subprocess.Popen[bytes] | None = None
        try:
            self.holder = subprocess.Popen(
                ["unshare", "--mount", "--uts", "--propagation", "private", "sleep", "infinity"]
            )
            holder = self.holder
            wait_until(lambda: _ns(holder.pid, "uts") != _ns(os.getpid(), "uts"),
                       "the namespace holder", timeout=60)  # fmt: skip
            self.sh(f"mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system "
                    f"&& hostname {START_HOSTNAME}")  # fmt: skip
        except BaseException:
            self.close()  # a half-built machine leaves no bus or holder behind
            raise
        self.daemon: subprocess.Popen[bytes] | None = None
        self.svmgr: Any = None

    # --- running things inside --------------------------------------------------

    def enter(self) -> list[str]:
        assert self.holder is not None
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-u"]

    def run(self, *cmd: str, nobody: bool = False, check: bool = False) -> subprocess.CompletedProcess[str]:
        argv = [*self.enter(), *(NOBODY if nobody else []), *cmd]
        out = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=120)
        if check and out.returncode != 0:
            raise AssertionError(f"{cmd} exited {out.returncode}:\n{out.stdout}{out.stderr}")
        return out

    def sh(self, script: str) -> str:
        return self.run("sh", "-c", script, check=True).stdout

    def hostname(self) -> str:
        return self.sh("hostname").strip()

    def spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.work / log, "ab") as f:
            proc = subprocess.Popen([*self.enter(), *argv], stdout=f, stderr=f, env=self.env)
        self.procs.append(proc)
        return proc

    def start_sd1(self) -> None:
        proc = self.spawn([sys.executable, str(HERE / "sd1_stub.py")], "sd1.log")
        wait_until(lambda: "ready" in self.log("sd1.log") or proc.poll() is not None,
                   "the systemd1 stand-in", timeout=60)
        assert proc.poll() is None, self.log("sd1.log")

    def start_bridge(self) -> None:
        """The real systemd1 bridge instead of the stand-in (``hostnamectl
        status`` reads the Manager's Virtualization and Architecture), on an
        svmgr of its own with no services."""
        from dynamod.testing import ConfigTree, Svmgr

        tree = ConfigTree(self.work / "sd1-etc")
        tree.root.mkdir(parents=True, exist_ok=True)
        self.svmgr = Svmgr(tree.root, self.work / "sd1-run", args=["--no-plugins"])
        proc = self.spawn([sys.executable, "-m", "dynamod_sd1bridge", "--socket", self.svmgr.socket,
                           "--config-dir", str(tree.root), "--no-private-socket"], "sd1.log")

        def owned() -> bool:
            out = self.run("busctl", "--system", "--no-pager", "status", "org.freedesktop.systemd1")
            return out.returncode == 0 or proc.poll() is not None

        wait_until(owned, "the systemd1 bridge on the bus", timeout=60)
        assert proc.poll() is None, self.log("sd1.log")

    def start_daemon(self, *args: str) -> subprocess.Popen[bytes]:
        """Run dynamod-hostnamed on the tree; returns once it sent READY=1."""
        notify = self.work / "notify.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            if notify.exists():
                notify.unlink()
            s.bind(str(notify))
            s.settimeout(60)
            self.env["NOTIFY_SOCKET"] = str(notify)
            try:
                self.daemon = self.spawn(
                    [sys.executable, "-m", "dynamod_hostnamed", "--root", str(self.root), *args],
                    "daemon.log",
                )
                try:
                    msg = s.recv(4096)
                except TimeoutError:
                    raise AssertionError(f"no READY=1 from the daemon:\n{self.log('daemon.log')}") from None
            finally:
                del self.env["NOTIFY_SOCKET"]
        assert msg == b"READY=1"
        return self.daemon

    def log(self, name: str) -> str:
        try:
            return (self.work / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
        if self.svmgr is not None:
            self.svmgr.stop()
        self.bus.stop()


def _ns(pid: int, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""
