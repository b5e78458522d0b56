"""The plugin as a plugin: found through its entry point, its tables seen by
the config loader, cheap to import, and the host's behaviour without it."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import dynamod_isolation.plugin
import pytest

from dynamod.config.extensions import collect_extensions
from dynamod.config.loader import load_config
from dynamod.plugins import make_plugin_host
from dynamod.testing import ConfigTree, Svmgr

NEEDS = (
    "needs the dynamod-isolation plugin, which is not loaded; "
    "install it from this repository: .venv/bin/uv pip install -e plugins/isolation"
)
HOOKS = {
    "dynamod_config_sections",
    "dynamod_spawn_prepare",
    "dynamod_service_started",
    "dynamod_service_kill",
    "dynamod_service_stopped",
    "dynamod_service_exit_reason",
    "dynamod_service_status",
    "dynamod_service_by_pid",
}


def isolated_services(tree: ConfigTree) -> None:
    tree.simple("plain", "exec sleep 1000")
    tree.simple("limited", "exec sleep 1000", extra='[cgroup]\nmemory-max = "512M"\n')
    tree.simple("boxed", "exec sleep 1000", extra='[namespace]\nenable = ["pid"]\n')


def test_entry_point_is_registered() -> None:
    eps = {ep.name: ep for ep in entry_points(group="dynamod")}
    assert eps["dynamod-isolation"].value == "dynamod_isolation.plugin"
    assert eps["dynamod-isolation"].dist.metadata["Name"] == "dynamod-isolation"
    requires = eps["dynamod-isolation"].dist.requires or []
    assert any(r.startswith("pyroute2") for r in requires)


def test_loaded_from_the_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNAMOD_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("DYNAMOD_PLUGINS_AUTOLOAD", raising=False)
    host = make_plugin_host()
    info = host.info["dynamod-isolation"]
    assert info.distribution == "dynamod-isolation"
    assert set(info.hooks) == HOOKS
    ext = collect_extensions(host)
    assert {n for n, (_s, owner) in ext.sections.items() if owner == "dynamod-isolation"} == {
        "cgroup",
        "namespace",
    }
    monkeypatch.setenv("DYNAMOD_DISABLE_PLUGINS", "dynamod-isolation")
    assert "dynamod-isolation" not in make_plugin_host().info


def test_import_is_cheap() -> None:
    """No pyroute2 (≈250 ms), no cgroup I/O at import: dynamodctl check and
    every svmgr start import the plugin."""
    code = (
        "import sys, dynamod_isolation.plugin as p\n"
        "heavy = [m for m in ('pyroute2', 'ctypes', 'asyncio') if m in sys.modules]\n"
        "print(heavy, p._isolation)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] None"


def test_sections_in_process(tmp_path: Path) -> None:
    host = make_plugin_host(
        load_entrypoints=False, plugins=[("dynamod-isolation", dynamod_isolation.plugin)]
    )
    ext = collect_extensions(host)
    assert ext.problems == []
    tree = ConfigTree(tmp_path)
    isolated_services(tree)
    cfg = load_config(tree.root, ext)
    assert cfg.errors == []
    assert cfg.services["limited"].sections == {"cgroup": {"memory-max": "512M"}}
    assert cfg.services["boxed"].sections == {"namespace": {"enable": ["pid"]}}


def test_host_alone_names_the_plugin(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path)
    isolated_services(tree)
    cfg = load_config(tree.root)  # no plugin at all
    errors = [str(d) for d in cfg.errors]
    assert f"error: services/limited.toml: cgroup: section [cgroup] {NEEDS}" in errors
    assert f"error: services/boxed.toml: namespace: section [namespace] {NEEDS}" in errors
    assert set(cfg.services) == {"plain"}


@pytest.mark.parametrize(
    "how",
    [
        {"args": ["--no-plugins"]},
        {"env": {**os.environ, "DYNAMOD_DISABLE_PLUGINS": "dynamod-isolation"}},
    ],
    ids=["no-plugins", "disabled"],
)
def test_svmgr_without_the_plugin(tmp_path: Path, how: dict) -> None:
    tree = ConfigTree(tmp_path / "etc")
    isolated_services(tree)
    with Svmgr(tree.root, tmp_path / "run", **how) as mgr:
        info = mgr.wait_state("plain", ["running", "failed"])
        assert info["state"] == "running"
        assert "cgroup" not in info["extra"]  # no isolation: no cgroup of its own
        log = mgr.log()
        assert f"section [cgroup] {NEEDS}" in log
        assert f"section [namespace] {NEEDS}" in log
        for name in ("limited", "boxed"):
            # A refused file is a failed unit that says why, not a missing one.
            refused = mgr.status(name)
            assert refused["state"] == "failed"
            assert NEEDS in refused["load_error"]
        # Stop still works the host's way (the process group).
        mgr.request("StopService", {"name": "plain"})
        assert mgr.wait_state("plain", "stopped")["state"] == "stopped"


def test_dynamodctl_check_names_the_plugin(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path)
    isolated_services(tree)
    env = {**os.environ, "DYNAMOD_DISABLE_PLUGINS": "dynamod-isolation"}
    out = subprocess.run(
        [sys.executable, "-m", "dynamod.ctl.main", "check", "--config-dir", str(tree.root)],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode != 0
    assert NEEDS in out.stdout + out.stderr
    env.pop("DYNAMOD_DISABLE_PLUGINS")
    out = subprocess.run(
        [sys.executable, "-m", "dynamod.ctl.main", "check", "--config-dir", str(tree.root)],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
