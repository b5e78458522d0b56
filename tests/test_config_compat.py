"""The reference distribution's configs load unchanged.

The files live beside the repository (../shared/compat/dynamod-configs, or
$DYNAMOD_COMPAT_DIR) and are read in place, never copied.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from dynamod.api import ConfigSection, ReadinessType
from dynamod.config.extensions import Extensions, builtin_extensions
from dynamod.config.graph import find_cycles, order_edges, topological_order
from dynamod.config.loader import check_or_raise, load_config
from dynamod.config.units import parse_size

COMPAT_DIR = Path(
    os.environ.get("DYNAMOD_COMPAT_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared/compat/dynamod-configs"
)

pytestmark = pytest.mark.skipif(not COMPAT_DIR.is_dir(), reason=f"{COMPAT_DIR} not found")

SERVICE_FILES = sorted(COMPAT_DIR.glob("services/*.toml"))
SUPERVISOR_FILES = sorted(COMPAT_DIR.glob("supervisors/*.toml"))


# Stand-ins for what dynamod-readiness and dynamod-isolation contribute. The
# real plugins replace these once they exist; the checks here are only as
# strict as the reference files need.


def _no_detector(ctx: Any) -> Any:
    raise NotImplementedError("test stand-in")


def _tcp_port(table: dict[str, Any]) -> list[tuple[str, str]]:
    port = table.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return [("port", f"expected a TCP port number, got {port!r}")]
    if "host" in table and not isinstance(table["host"], str):
        return [("host", "expected a string")]
    return []


def _cgroup(table: dict[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for key, value in table.items():
        if key in ("memory-max", "memory-high"):
            try:
                parse_size(value, allow_infinity=True)
            except ValueError as exc:
                problems.append((key, str(exc)))
        elif key in ("cpu-weight", "pids-max"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append((key, "expected a positive integer"))
        else:
            problems.append((key, "unknown key"))
    return problems


_NAMESPACES = {"pid", "mnt", "net", "ipc", "uts", "user", "cgroup"}


def _namespace(table: dict[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for key, value in table.items():
        if key == "enable":
            if not isinstance(value, list) or not set(value) <= _NAMESPACES:
                problems.append((key, f"expected a list of {sorted(_NAMESPACES)}"))
        elif key == "private-tmp":
            if not isinstance(value, bool):
                problems.append((key, "expected a boolean"))
        elif key == "protect-system":
            if value not in (True, False, "full", "strict"):
                problems.append((key, "expected true, false, 'full' or 'strict'"))
        elif key == "bind-mounts":
            for i, mount in enumerate(value if isinstance(value, list) else [value]):
                if not isinstance(mount, dict) or not {"source", "target"} <= set(mount):
                    problems.append((f"bind-mounts[{i}]", "expected {source, target, writable}"))
        else:
            problems.append((key, "unknown key"))
    return problems


def reference_extensions() -> Extensions:
    ext = builtin_extensions()
    ext.readiness["notify"] = (ReadinessType("notify", _no_detector), "dynamod-readiness")
    ext.readiness["tcp-port"] = (
        ReadinessType("tcp-port", _no_detector, frozenset({"port", "host"}), _tcp_port),
        "dynamod-readiness",
    )
    ext.sections["cgroup"] = (ConfigSection("cgroup", _cgroup), "dynamod-isolation")
    ext.sections["namespace"] = (ConfigSection("namespace", _namespace), "dynamod-isolation")
    ext.plugins = ["dynamod-isolation", "dynamod-readiness"]
    return ext


def test_reference_files_are_present() -> None:
    assert len(SERVICE_FILES) >= 20
    assert {p.stem for p in SUPERVISOR_FILES} == {"root", "early-boot", "desktop"}


@pytest.mark.parametrize("path", SERVICE_FILES + SUPERVISOR_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_file_loads_alone(tmp_path: Path, path: Path) -> None:
    # Alone, a file may reference services or supervisors defined elsewhere;
    # everything else about it must be valid.
    (tmp_path / path.parent.name).mkdir()
    (tmp_path / path.parent.name / path.name).symlink_to(path)
    cfg = load_config(tmp_path, reference_extensions())
    own = [
        d for d in cfg.errors
        if "unknown supervisor" not in d.message and "requires unknown service" not in d.message
    ]
    assert own == [], [str(d) for d in own]


def test_tree_validates_as_one_system() -> None:
    cfg = check_or_raise(load_config(COMPAT_DIR, reference_extensions()))
    assert cfg.diagnostics == [], [str(d) for d in cfg.diagnostics]
    assert sorted(cfg.services) == sorted(p.stem for p in SERVICE_FILES)
    assert sorted(cfg.supervisors) == ["desktop", "early-boot", "root"]
    assert find_cycles(order_edges(cfg.services)) == []


def test_reference_values() -> None:
    cfg = load_config(COMPAT_DIR, reference_extensions())
    s = cfg.services
    assert s["agetty-tty1"].shutdown.stop_signal == signal.SIGHUP
    assert s["nginx"].shutdown.stop_signal == signal.SIGQUIT
    assert s["nginx"].readiness.options == {"port": 80}
    assert s["nginx"].sections["cgroup"]["memory-max"] == "512M"
    assert s["nginx"].dependencies.wants == ("syslog",)
    assert (s["nginx"].user, s["nginx"].group) == ("root", "root")
    assert s["postgresql"].environment == {"PGDATA": "/var/lib/postgresql/data", "LC_ALL": "C.UTF-8"}
    assert s["postgresql"].workdir == "/var/lib/postgresql"
    assert s["postgresql"].restart.max_restart_window == 120.0
    assert len(s["postgresql"].sections["namespace"]["bind-mounts"]) == 3
    assert s["dynamod-logind"].type == "notify"
    assert s["dynamod-logind"].readiness.type == "notify"
    assert s["fsck"].type == "oneshot" and s["fsck"].restart.policy == "temporary"
    assert s["bootmisc"].supervisor == "early-boot"
    sup = cfg.supervisors
    assert (sup["root"].max_restarts, sup["root"].max_restart_window) == (20, 600.0)
    assert sup["early-boot"].strategy == "one-for-all"
    assert sup["desktop"].parent == "root"


def test_reference_start_order() -> None:
    cfg = load_config(COMPAT_DIR, reference_extensions())
    order = topological_order(cfg.services)
    pos = {name: i for i, name in enumerate(order)}
    for before, after in [
        ("fstab-mount", "modules-load"),
        ("modules-load", "udev"),
        ("udev", "udev-coldplug"),
        ("fsck", "remount-root-rw"),
        ("remount-root-rw", "machine-id"),
        ("dbus", "dynamod-logind"),
        ("dynamod-logind", "dynamod-sd1bridge"),
        ("network", "nginx"),
    ]:
        assert pos[before] < pos[after], (before, after)


def test_builtin_only_names_missing_plugins() -> None:
    cfg = load_config(COMPAT_DIR)
    errors = [str(d) for d in cfg.errors]
    readiness = "needs the dynamod-readiness plugin, which is not loaded; install it from this repository: " \
        ".venv/bin/uv pip install -e plugins/readiness"
    isolation = "needs the dynamod-isolation plugin, which is not loaded; install it from this repository: " \
        ".venv/bin/uv pip install -e plugins/isolation"
    for name in ("dynamod-hostnamed", "dynamod-logind", "dynamod-sd1bridge", "nginx", "postgresql", "sshd"):
        assert any(f"services/{name}.toml: readiness.type:" in e and readiness in e for e in errors), name
    for name in ("nginx", "postgresql", "sshd", "syslog"):
        assert any(f"services/{name}.toml: cgroup:" in e and isolation in e for e in errors), name
    for name in ("nginx", "postgresql"):
        assert any(f"services/{name}.toml: namespace:" in e and isolation in e for e in errors), name
    # Nothing but missing plugins is wrong with the tree.
    assert all(readiness in e or isolation in e for e in errors), errors
    # The services that need no plugin still load.
    assert {"dbus", "udev", "fsck", "example"} <= set(cfg.services)
    assert "nginx" not in cfg.services
