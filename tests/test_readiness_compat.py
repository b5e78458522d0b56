"""The reference distribution's configs validate with the real
dynamod-readiness plugin (test_config_compat.py uses stand-ins for it).

Only ``[cgroup]`` and ``[namespace]`` still get permissive stand-ins: they
belong to dynamod-isolation, which has not been written yet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dynamod_readiness.plugin
import pytest

from dynamod.api import ConfigSection
from dynamod.config.extensions import Extensions, collect_extensions
from dynamod.config.loader import check_or_raise, load_config
from dynamod.plugins import make_plugin_host

COMPAT_DIR = Path(
    os.environ.get("DYNAMOD_COMPAT_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared/compat/dynamod-configs"
)

pytestmark = pytest.mark.skipif(not COMPAT_DIR.is_dir(), reason=f"{COMPAT_DIR} not found")


def _anything(table: dict[str, Any]) -> list[tuple[str, str]]:
    return []


def real_readiness_extensions() -> Extensions:
    host = make_plugin_host(
        load_entrypoints=False, plugins=[("dynamod-readiness", dynamod_readiness.plugin)]
    )
    ext = collect_extensions(host)
    ext.sections["cgroup"] = (ConfigSection("cgroup", _anything), "dynamod-isolation")
    ext.sections["namespace"] = (ConfigSection("namespace", _anything), "dynamod-isolation")
    ext.plugins = sorted({*ext.plugins, "dynamod-isolation"})
    return ext


def test_reference_tree_validates_with_the_real_plugin() -> None:
    cfg = check_or_raise(load_config(COMPAT_DIR, real_readiness_extensions()))
    assert cfg.diagnostics == [], [str(d) for d in cfg.diagnostics]
    assert sorted(cfg.services) == sorted(p.stem for p in COMPAT_DIR.glob("services/*.toml"))


def test_reference_readiness_values() -> None:
    s = load_config(COMPAT_DIR, real_readiness_extensions()).services
    used = {c.readiness.type for c in s.values()}
    assert {"notify", "tcp-port"} <= used <= {"none", "notify", "tcp-port", "exec", "fd"}
    assert s["nginx"].readiness.options == {"port": 80}
    assert s["postgresql"].readiness.options == {"port": 5432}
    assert s["sshd"].readiness.options == {"port": 22}
    assert s["dynamod-logind"].readiness.type == "notify"
    assert s["dynamod-logind"].readiness.options == {}


def test_real_plugin_rejects_what_the_references_would_get_wrong(tmp_path: Path) -> None:
    # Same tree, one reference file altered: the plugin's validator (not a
    # stand-in) reports it with the file and key.
    (tmp_path / "services").mkdir()
    (tmp_path / "supervisors").mkdir()
    for sub in ("services", "supervisors"):
        for path in COMPAT_DIR.glob(f"{sub}/*.toml"):
            text = path.read_text()
            if path.name == "nginx.toml":
                text = text.replace("port = 80", "port = 80000")
            (tmp_path / sub / path.name).write_text(text)
    errors = [str(d) for d in load_config(tmp_path, real_readiness_extensions()).errors]
    assert any("services/nginx.toml: readiness.port:" in e and "1-65535" in e for e in errors), (
        errors
    )
