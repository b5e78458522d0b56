"""What dynamod-svmgr loads at start (docs/performance.md, "What dominates
svmgr's memory"), and its hand-written command line.

The imports are checked from inside a real manager: a probe plugin,
installed as a distribution on PYTHONPATH, reports ``sys.modules`` as it
was when the manager started the probe service, then imports ``ssl`` the
way a plugin would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dynamod.testing import ConfigTree, Svmgr, install_plugin

PROBE = """
    import sys

    import dynamod

    _seen = {}


    @dynamod.hookimpl
    def dynamod_service_started(service, pid):
        _seen.setdefault(service.name, sorted(sys.modules))


    @dynamod.hookimpl
    def dynamod_service_status(service):
        if service.name not in _seen:
            return None
        import asyncio.base_events
        import ssl

        ssl.create_default_context()
        return {
            "modules": _seen[service.name],
            "ssl_works": True,
            "asyncio_tls": asyncio.base_events.ssl is not None,
        }
"""

# Not loaded by svmgr at start (each one was, once): ssl/_ssl and hashlib/
# _hashlib map OpenSSL, importlib.metadata brings email and zipfile,
# argparse and pathlib are replaced by plain code.
NOT_AT_START = (
    "ssl", "_ssl", "hashlib", "_hashlib", "importlib.metadata", "email", "zipfile", "argparse",
    "pathlib",
)


def install_probe(site: Path) -> None:
    install_plugin(site, "footprint-probe", "footprint_probe", PROBE)


def test_svmgr_starts_without_openssl_and_plugins_can_still_import_ssl(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_probe(site)
    tree = ConfigTree(tmp_path / "etc")
    tree.simple("app", "exec sleep 1000")
    tree.simple("ready", "exec sleep 1000", extra='[readiness]\ntype = "tcp-port"\nport = 1\n',
                enabled=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    with Svmgr(tree.root, tmp_path / "run", env=env) as mgr:
        mgr.wait_state("app", "running")
        extra = mgr.wait_for(lambda: mgr.status("app")["extra"].get("modules") and mgr.status("app")["extra"])
        modules = set(extra["modules"])
        assert "asyncio" in modules and "footprint_probe" in modules
        loaded = [m for m in NOT_AT_START if m in modules]
        assert loaded == [], f"svmgr imported {loaded} at start"
        # The readiness plugin validated the tcp-port service without
        # importing its detector.
        assert "dynamod_readiness.plugin" in modules
        assert "dynamod_readiness.tcp" not in modules
        # A plugin may import ssl; asyncio's own TLS support stays off.
        assert extra["ssl_works"] is True
        assert extra["asyncio_tls"] is False


def svmgr_cmd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "dynamod.svmgr.main", *args],
        capture_output=True, text=True, env=full, timeout=60,
    )


def test_help_and_usage_errors() -> None:
    r = svmgr_cmd("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: dynamod-svmgr")
    assert "--no-plugins" in r.stdout and "DYNAMOD_CONFIG_DIR" in r.stdout
    r = svmgr_cmd("--colour")
    assert r.returncode == 2
    assert r.stderr.startswith("dynamod-svmgr: unknown argument '--colour'\nusage:")
    r = svmgr_cmd("--runtime-dir")
    assert r.returncode == 2
    assert r.stderr.startswith("dynamod-svmgr: --runtime-dir needs a value\n")


def test_parse_args_spellings_and_environment_defaults() -> None:
    code = (
        "from dynamod.svmgr.main import parse_args\n"
        "for argv in ([], ['--config-dir', 'a', '--runtime-dir=b', '--no-plugins'],"
        " ['--config-dir=', '--config-dir', 'c']):\n"
        "    o = parse_args(argv)\n"
        "    print(repr((o.config_dir, o.runtime_dir, o.no_plugins)))\n"
    )
    full = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    full.update(DYNAMOD_CONFIG_DIR="/env/etc", DYNAMOD_RUNTIME_DIR="/env/run")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full,
                       timeout=60, check=True)
    assert r.stdout.splitlines() == [
        "('/env/etc', '/env/run', False)",
        "('a', 'b', True)",
        "('c', '/env/run', False)",
    ]
