"""A booted dynamod system in a container (dynamod-init as PID 1 of its
own PID and mount namespace, with its own /run): dbus-daemon and the
bridge run as dynamod services (the bridge contributed by the installed
plugin, as on a real system), and systemctl inside works, down to
poweroff."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from dynamod_mimic_common.testing import NOBODY, PrivateBus
from dynamod_sd1bridge.testing import POLICY

from dynamod.testing import ConfigTree, InitContainer

ENV = {"SYSTEMD_PAGER": "cat", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8", "COLUMNS": "200",
       "DYNAMOD_HEARTBEAT_INTERVAL": "0.5"}


@pytest.fixture
def system() -> tuple[ConfigTree, Path]:
    work = Path(tempfile.mkdtemp(prefix="sd1-ct-", dir="/tmp"))
    work.chmod(0o755)
    tree = ConfigTree(work / "etc")
    bus = PrivateBus(policy_dirs=(), policy_files=(POLICY,), directory=str(work / "dbus"),
                     socket="/run/dbus/system_bus_socket")
    script = "mkdir -p /run/dbus && exec " + " ".join(bus.command())
    tree.simple("dbus", script, description="D-Bus system message bus")
    tree.simple("web", description="Web frontend", enabled=False)
    yield tree, work
    shutil.rmtree(work, ignore_errors=True)


def sysctl(c: InitContainer, *args: str, user: int | None = None):
    env = [f"{k}={v}" for k, v in ENV.items()]
    pre = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user is not None else []
    return c.run("env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *env, *pre, "systemctl", *args,
                 timeout=60)


def wait_ok(c: InitContainer, *args: str, user: int | None = None):
    from dynamod.testing import wait_until

    return wait_until(lambda: (r := sysctl(c, *args, user=user)).returncode == 0 and r,
                      f"systemctl {' '.join(args)} in the container", context=c.log)


def test_booted_container(system):
    tree, work = system
    before = sorted(os.listdir("/run/systemd")) if os.path.isdir("/run/systemd") else None
    with InitContainer(tree.root, work / "w", env=ENV, plugin_services=True) as c:
        c.wait_log("dynamod-sd1bridge: waiting-ready -> running")
        # Root: the private socket; nobody: the system bus (both inside).
        out = wait_ok(c, "status", "dynamod-sd1bridge").stdout
        assert "● dynamod-sd1bridge.service - systemd1 D-Bus API for systemctl" in out
        assert "<plugin" not in out
        wait_ok(c, "is-active", "dbus", user=NOBODY)
        r = sysctl(c, "start", "web")
        assert r.returncode == 0, r.stderr + c.log()
        assert sysctl(c, "is-active", "web").stdout.strip() == "active"
        r = sysctl(c, "stop", "web", user=NOBODY)
        assert r.returncode == 4 and "Access denied" in r.stderr
        r = sysctl(c, "stop", "web")
        assert r.returncode == 0, r.stderr
        assert sysctl(c, "is-active", "web", user=NOBODY).stdout.strip() == "inactive"
        # No login1 here: systemctl falls back to systemd1's poweroff.target.
        r = sysctl(c, "poweroff")
        assert r.returncode == 0, r.stderr
        assert c.wait(60) == 0
        assert "shutdown requested: poweroff" in c.log()
    after = sorted(os.listdir("/run/systemd")) if os.path.isdir("/run/systemd") else None
    assert before == after
