"""The plugin hook: the dynamod-sd1bridge service for the system's service
manager only, found through the installed entry point."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from dynamod_sd1bridge import plugin


def test_definition_only_under_init(monkeypatch):
    monkeypatch.delenv("DYNAMOD_SD1BRIDGE_SERVICE", raising=False)
    monkeypatch.setattr(plugin, "_UNDER_INIT", False)
    assert plugin.dynamod_service_definitions() == []
    monkeypatch.setattr(plugin, "_UNDER_INIT", True)
    (d,) = plugin.dynamod_service_definitions()
    cfg = tomllib.loads(d.text)
    assert cfg["service"]["name"] == d.name == "dynamod-sd1bridge"
    assert cfg["service"]["exec"] == [sys.executable, "-m", "dynamod_sd1bridge"]
    assert cfg["dependencies"]["after"] == ["dbus"]
    monkeypatch.setenv("DYNAMOD_SD1BRIDGE_SERVICE", "0")
    assert plugin.dynamod_service_definitions() == []


def test_installed_entry_point_contributes_the_service(tmp_path):
    """dynamodctl check (a separate process, plugins from entry points) sees
    the service when forced in, and it passes the config checks."""
    (tmp_path / "services").mkdir()
    env = {"DYNAMOD_SD1BRIDGE_SERVICE": "1", "PATH": "/usr/bin:/bin"}
    def check():
        return subprocess.run([sys.executable, "-m", "dynamod.ctl.main", "check", "--config-dir",
                               str(tmp_path)], env=env, capture_output=True, text=True)

    r = check()
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{tmp_path}: 1 service, 1 supervisor; 0 errors" in r.stdout + r.stderr
    env["DYNAMOD_SD1BRIDGE_SERVICE"] = "0"
    r = check()
    assert f"{tmp_path}: 0 services, 1 supervisor; 0 errors, 0 warnings" in r.stdout + r.stderr
    # The host's knob drops every plugin's services, this one's included.
    env.update(DYNAMOD_SD1BRIDGE_SERVICE="1", DYNAMOD_PLUGIN_SERVICES="0")
    r = check()
    assert f"{tmp_path}: 0 services, 1 supervisor; 0 errors, 0 warnings" in r.stdout + r.stderr
