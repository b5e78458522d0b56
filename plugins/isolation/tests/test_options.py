"""Validation of ``[cgroup]`` and ``[namespace]`` at config load: the
reference configs load, bad values are errors naming file and key, and the
parsed values are what the kernel files and unshare(1) get."""

from __future__ import annotations

import os
from pathlib import Path

import dynamod_isolation.plugin
import pytest
from dynamod_isolation.options import (
    DEFAULT_ID_MAP,
    BindMount,
    IdRange,
    parse_cgroup,
    parse_namespace,
)

from dynamod.config.extensions import collect_extensions
from dynamod.config.loader import load_config
from dynamod.plugins import make_plugin_host
from dynamod.testing import ConfigTree

# The reference configs live in shared/ beside the repository checkout.
COMPAT = Path(
    os.environ.get("DYNAMOD_COMPAT_DIR")
    or Path(__file__).resolve().parents[3].parent / "shared" / "compat" / "dynamod-configs"
)


def extensions():
    host = make_plugin_host(
        load_entrypoints=False, plugins=[("dynamod-isolation", dynamod_isolation.plugin)]
    )
    return collect_extensions(host)


def errors_for(tmp_path: Path, extra: str) -> list[str]:
    tree = ConfigTree(tmp_path)
    tree.simple("svc", "exec sleep 1", extra=extra)
    return [str(d) for d in load_config(tree.root, extensions()).errors]


@pytest.mark.skipif(not COMPAT.is_dir(), reason="reference configs not available")
def test_reference_configs_validate() -> None:
    """Every [cgroup]/[namespace] table of the reference distribution passes
    this plugin's validators (the other sections belong to other plugins)."""
    import tomllib

    seen = 0
    for path in sorted((COMPAT / "services").glob("*.toml")):
        data = tomllib.loads(path.read_text())
        if "cgroup" in data:
            assert parse_cgroup(data["cgroup"])[1] == [], path
            seen += 1
        if "namespace" in data:
            assert parse_namespace(data["namespace"])[1] == [], path
            seen += 1
    assert seen >= 6


def test_reference_values() -> None:
    values, problems = parse_cgroup(
        {"memory-max": "512M", "memory-high": "1536M", "cpu-weight": 200, "pids-max": 256}
    )
    # Accepted as the kernel accepts it (memory.high above memory.max never
    # takes effect, but it is not an error).
    assert problems == []
    values, problems = parse_cgroup(
        {"memory-max": "2G", "memory-high": "1536M", "cpu-weight": 200, "pids-max": 256}
    )
    assert problems == []
    assert values == {
        "memory-max": str(2 << 30),
        "memory-high": str(1536 << 20),
        "cpu-weight": "200",
        "pids-max": "256",
    }
    opts, problems = parse_namespace(
        {
            "enable": ["pid", "mnt"],
            "private-tmp": True,
            "protect-system": "strict",
            "bind-mounts": [
                {"source": "/var/lib/postgresql", "target": "/var/lib/postgresql", "writable": True},
                {"source": "/etc/ssl", "target": "/etc/ssl", "writable": False},
            ],
        }
    )
    assert problems == []
    assert opts.namespaces == {"pid", "mnt"}
    assert opts.private_tmp and opts.protect_system == "strict"
    assert opts.bind_mounts == (
        BindMount("/var/lib/postgresql", "/var/lib/postgresql", True),
        BindMount("/etc/ssl", "/etc/ssl", False),
    )


@pytest.mark.parametrize(
    ("table", "values"),
    [
        ({"memory-max": "infinity", "memory-high": "max"}, {"memory-max": "max", "memory-high": "max"}),
        ({"memory-max": 1048576}, {"memory-max": "1048576"}),
        ({"cpu-max": "50%"}, {"cpu-max": "50000 100000"}),
        ({"cpu-max": "250%"}, {"cpu-max": "250000 100000"}),
        ({"cpu-max": "max"}, {"cpu-max": "max 100000"}),
        ({"cpu-max": "20000 50000"}, {"cpu-max": "20000 50000"}),
        ({"pids-max": "max"}, {"pids-max": "max"}),
        ({"io-weight": 10_000}, {"io-weight": "default 10000"}),
        ({"cpu-weight": 1}, {"cpu-weight": "1"}),
    ],
)
def test_cgroup_values(table: dict, values: dict) -> None:
    assert parse_cgroup(table) == (values, [])


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ('memory-max = "lots"', "cgroup.memory-max", "invalid size"),
        ("memory-max = -1", "cgroup.memory-max", "must not be negative"),
        ("memory-high = true", "cgroup.memory-high", "expected a size"),
        ("cpu-weight = 0", "cgroup.cpu-weight", "from 1 to 10000"),
        ("cpu-weight = 10001", "cgroup.cpu-weight", "from 1 to 10000"),
        ('cpu-weight = "200"', "cgroup.cpu-weight", "from 1 to 10000"),
        ('cpu-max = "0.5%"', "cgroup.cpu-max", "too small"),
        ('cpu-max = "fast"', "cgroup.cpu-max", "invalid cpu-max"),
        ("cpu-max = 50", "cgroup.cpu-max", "expected a string"),
        ('cpu-max = "500 100000"', "cgroup.cpu-max", "at least 1000"),
        ('cpu-max = "50000 10"', "cgroup.cpu-max", "period must be"),
        ("pids-max = 0", "cgroup.pids-max", "positive integer"),
        ('pids-max = "many"', "cgroup.pids-max", "positive integer"),
        ("io-weight = 0", "cgroup.io-weight", "from 1 to 10000"),
        ('memory-swap = "1G"', "cgroup.memory-swap", "unknown key"),
    ],
)
def test_bad_cgroup_values(tmp_path: Path, extra: str, key: str, message: str) -> None:
    errors = errors_for(tmp_path, f"[cgroup]\n{extra}\n")
    assert any(f"services/svc.toml: {key}:" in e and message in e for e in errors), errors


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ('enable = ["pid", "time"]', "namespace.enable[1]", "unknown namespace 'time'"),
        ('enable = ["net", "net"]', "namespace.enable[1]", "listed twice"),
        ('enable = "pid"', "namespace.enable", "expected an array"),
        ('hostname = "bad name"', "namespace.hostname", "expected a host name"),
        ('hostname = "-x"', "namespace.hostname", "expected a host name"),
        ('private-tmp = "yes"', "namespace.private-tmp", "expected true or false"),
        ("protect-system = true", "namespace.protect-system", "ambiguous"),
        ('protect-system = "read-only"', "namespace.protect-system", "expected one of"),
        ('writable-paths = ["relative"]', "namespace.writable-paths[0]", "absolute path"),
        ('writable-paths = ["/var/lib/x"]', "namespace.writable-paths", "only meaningful"),
        ('bind-mounts = [{ target = "/x" }]', "namespace.bind-mounts[0].source", "missing"),
        ('bind-mounts = [{ source = "x" }]', "namespace.bind-mounts[0].source", "absolute path"),
        ('bind-mounts = [{ source = "/x", target = "/a/../b" }]', "namespace.bind-mounts[0].target", "'..'"),
        ('bind-mounts = [{ source = "/x", writable = "yes" }]', "namespace.bind-mounts[0].writable", "true or false"),
        ('bind-mounts = [{ source = "/x", mode = "ro" }]', "namespace.bind-mounts[0].mode", "unknown key"),
        ('bind-mounts = [{ source = "/x", target = "/" }]', "namespace.bind-mounts[0].target", "over /"),
        ('bind-mounts = "/x"', "namespace.bind-mounts", "array of tables"),
        ('enable = ["user"]\nuid-map = "0:100000"', "namespace.uid-map", "INSIDE:OUTSIDE:COUNT"),
        ('enable = ["user"]\nuid-map = "0:100000:0"', "namespace.uid-map", "empty"),
        ('enable = ["user"]\nuid-map = ["0:1000:10", "5:2000:10"]', "namespace.uid-map", "overlap inside"),
        ('uid-map = "0:100000:65536"', "namespace.uid-map", "needs 'user'"),
        ("private = true", "namespace.private", "unknown key"),
    ],
)
def test_bad_namespace_values(tmp_path: Path, extra: str, key: str, message: str) -> None:
    errors = errors_for(tmp_path, f"[namespace]\n{extra}\n")
    assert any(f"services/svc.toml: {key}:" in e and message in e for e in errors), errors


def test_implications() -> None:
    opts, problems = parse_namespace({"hostname": "box", "private-tmp": True})
    assert problems == []
    assert opts.namespaces == {"uts", "mnt"}  # hostname -> uts, mount options -> mnt
    opts, _ = parse_namespace({"enable": ["pid"]})
    assert opts.namespaces == {"pid", "mnt"}  # its own /proc needs a mount namespace
    opts, _ = parse_namespace({"enable": ["mount", "user"], "uid-map": ["0:100000:65536"]})
    assert opts.namespaces == {"mnt", "user"}
    assert opts.uid_map == (IdRange(0, 100000, 65536),) and opts.gid_map == DEFAULT_ID_MAP
    opts, _ = parse_namespace({"bind-mounts": [{"source": "/srv//data/"}]})
    assert opts.bind_mounts == (BindMount("/srv/data", "/srv/data", False),)


def test_good_tables_load(tmp_path: Path) -> None:
    extra = """
[cgroup]
memory-max = "512M"
memory-high = "384M"
cpu-weight = 200
cpu-max = "150%"
pids-max = 256
io-weight = 50

[namespace]
enable = ["pid", "net", "ipc", "uts", "user", "cgroup", "mnt"]
hostname = "web.example.org"
private-tmp = true
protect-system = "strict"
writable-paths = ["/var/lib/web"]
bind-mounts = [{ source = "/srv/web", target = "/var/www", writable = true }]
uid-map = "0:100000:65536"
gid-map = ["0:100000:65536"]
"""
    assert errors_for(tmp_path, extra) == []
