"""D-Bus activation: the first call to a name starts the daemon, through
svmgr when it runs, by itself when it does not."""

from __future__ import annotations

import json
import os
import re

from dynamod_hostnamed import busfiles, plugin
from dynamod_hostnamed.fsroot import Root

from dynamod.testing import pid_alive, wait_until


def _owner_pid(machine, name: str) -> int:
    out = machine.run("busctl", "status", name, check=True).stdout
    return int(re.search(r"^PID=(\d+)$", out, re.M)[1])


def test_first_call_starts_the_daemon_without_svmgr(make_machine, sysroot, tmp_path, monkeypatch) -> None:
    services = tmp_path / "activation"
    busfiles.install(Root(services), args=("--root", str(sysroot)))
    (sysroot / "etc/hostname").write_text("activated\n")
    monkeypatch.setenv("DYNAMOD_SOCKET", str(tmp_path / "no-svmgr.sock"))
    m = make_machine(service_dirs=(services / busfiles.SERVICE_DIR.lstrip("/"),), daemon=False)
    assert m.run("hostnamectl", "--static", check=True).stdout == "activated\n"
    pid = _owner_pid(m, "org.freedesktop.hostname1")
    # one process owns all three names: a timedate1 call does not start another
    assert "Timezone=Etc/UTC" in m.run("timedatectl", "show", check=True).stdout
    assert _owner_pid(m, "org.freedesktop.timedate1") == pid
    m.close()  # the bus goes away: the daemon exits on its own
    wait_until(lambda: not pid_alive(pid), "the activated daemon to exit with its bus", timeout=60)


def test_first_call_starts_the_service_through_svmgr(make_machine, sysroot, tmp_path, tree, svmgr,
                                                     monkeypatch) -> None:  # fmt: skip
    services = tmp_path / "activation"
    busfiles.install(Root(services))
    (sysroot / "etc/hostname").write_text("via-svmgr\n")
    runtime = tmp_path / "svmgr-run"
    monkeypatch.setenv("DYNAMOD_SOCKET", str(runtime / "control.sock"))
    m = make_machine(service_dirs=(services / busfiles.SERVICE_DIR.lstrip("/"),), daemon=False)
    # the plugin's own definition, pointed at the test's bus and tree
    text = plugin.service_toml().replace(
        '"-m", "dynamod_hostnamed"]', f'"-m", "dynamod_hostnamed", "--root", {json.dumps(str(sysroot))}]'
    ).replace(
        "enabled = false\n",
        f'enabled = false\nenvironment = {{ DBUS_SYSTEM_BUS_ADDRESS = "{m.bus.address}" }}\n',
    )
    tree.service("dynamod-hostnamed", text)
    mgr = svmgr(runtime_dir=runtime, env={**os.environ, "DYNAMOD_HOSTNAMED_SERVICE": "1"})
    assert mgr.status("dynamod-hostnamed")["state"] == "stopped"
    assert m.run("hostnamectl", "--static", check=True).stdout == "via-svmgr\n"
    # the bus hands the call over once the name is owned, READY=1 may follow
    info = mgr.wait_state("dynamod-hostnamed", "running", timeout=60)
    assert _owner_pid(m, "org.freedesktop.locale1") == info["main_pid"]
    assert os.path.exists(f"/proc/{info['main_pid']}")
