"""The plugin contributes the dynamod-hostnamed service through its entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
from dynamod_hostnamed import busfiles
from dynamod_hostnamed.fsroot import Root

from dynamod.ipc.client import RemoteError


def test_entry_point_is_registered() -> None:
    eps = {ep.name: ep for ep in entry_points(group="dynamod")}
    assert eps["dynamod-hostnamed"].value == "dynamod_hostnamed.plugin"


FORCED = {**os.environ, "DYNAMOD_HOSTNAMED_SERVICE": "1"}


def test_svmgr_knows_the_service_and_does_not_start_it_at_boot(tree, svmgr) -> None:
    mgr = svmgr(env=FORCED)
    info = mgr.status("dynamod-hostnamed")
    assert info["state"] == "stopped"
    assert info["enabled"] is False
    assert info["type"] == "notify"
    assert info["wants"] == ["dbus"]


def test_a_file_replaces_the_definition(tree, svmgr) -> None:
    tree.simple("dynamod-hostnamed", description="mine", enabled=False)
    mgr = svmgr(env=FORCED)
    assert mgr.status("dynamod-hostnamed")["description"] == "mine"


def test_check_accepts_the_definition(tree) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dynamod.ctl.main", "check", "--config-dir", str(tree.root)],
        capture_output=True, text=True, env=FORCED,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 service," in out.stdout, out.stdout  # dynamod-hostnamed


def test_bus_files(tmp_path) -> None:
    written = busfiles.install(Root(tmp_path), python="/opt/py/bin/python3")
    assert len(written) == 4
    svc = (tmp_path / "usr/local/share/dbus-1/system-services/org.freedesktop.timedate1.service").read_text()
    assert "Name=org.freedesktop.timedate1\n" in svc
    assert "Exec=/opt/py/bin/python3 -m dynamod_hostnamed activate\n" in svc
    assert "SystemdService=dynamod-hostnamed.service\n" in svc
    policy = (tmp_path / "etc/dbus-1/system.d/dynamod-hostnamed.conf").read_text()
    for name in busfiles.BUS_NAMES:
        assert f'<allow own="{name}"/>' in policy
        assert f'<allow send_destination="{name}"/>' in policy
    # a well-formed bus configuration
    import xml.dom.minidom

    xml.dom.minidom.parseString(policy)


@pytest.mark.parametrize(
    "env",
    [{**FORCED, "DYNAMOD_DISABLE_PLUGINS": "dynamod-hostnamed"},  # not loaded
     {k: v for k, v in os.environ.items() if k != "DYNAMOD_HOSTNAMED_SERVICE"}],  # not under init
)  # fmt: skip
def test_only_the_system_svmgr_gets_the_service(tree, svmgr, env) -> None:
    mgr = svmgr(env=env)
    with pytest.raises(RemoteError) as exc:
        mgr.status("dynamod-hostnamed")
    assert exc.value.code == "unknown-service"
