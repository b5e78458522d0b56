"""The plugin as a plugin: registered through its entry point, its types
and validators seen by the config loader, and the host's behaviour when it
is not installed (svmgr with ``--no-plugins`` or with the entry point
disabled)."""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import dynamod_readiness.plugin
import pytest

from dynamod.api import ReadinessType
from dynamod.config.extensions import collect_extensions
from dynamod.config.loader import load_config
from dynamod.plugins import make_plugin_host
from dynamod.testing import ConfigTree, Svmgr

TYPES = {"notify", "tcp-port", "exec", "fd"}
NEEDS = (
    "needs the dynamod-readiness plugin, which is not loaded; "
    "install it from this repository: .venv/bin/uv pip install -e plugins/readiness"
)


def real_extensions():
    host = make_plugin_host(
        load_entrypoints=False, plugins=[("dynamod-readiness", dynamod_readiness.plugin)]
    )
    return collect_extensions(host)


def one_of_each(tree: ConfigTree) -> None:
    tree.simple("plain", "exec sleep 1000")
    tree.simple("n", "exec sleep 1000", type="notify")
    tree.simple("t", "exec sleep 1000", extra='[readiness]\ntype = "tcp-port"\nport = 5432\n')
    tree.simple("e", "exec sleep 1000", extra='[readiness]\ntype = "exec"\ncheck-exec = ["true"]\n')
    tree.simple("f", "exec sleep 1000", extra='[readiness]\ntype = "fd"\n')


# ---------------------------------------------------------------- installed


def test_entry_point_is_registered() -> None:
    eps = {ep.name: ep for ep in entry_points(group="dynamod")}
    assert eps["dynamod-readiness"].value == "dynamod_readiness.plugin"
    assert eps["dynamod-readiness"].dist.metadata["Name"] == "dynamod-readiness"


def test_loaded_from_the_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNAMOD_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("DYNAMOD_PLUGINS_AUTOLOAD", raising=False)
    host = make_plugin_host()
    assert host.info["dynamod-readiness"].distribution == "dynamod-readiness"
    ext = collect_extensions(host)
    assert {n for n, (_rt, owner) in ext.readiness.items() if owner == "dynamod-readiness"} == TYPES
    monkeypatch.setenv("DYNAMOD_DISABLE_PLUGINS", "dynamod-readiness")
    assert "dynamod-readiness" not in make_plugin_host().info


def test_hooks_in_process() -> None:
    ext = real_extensions()
    assert ext.problems == []
    assert set(ext.readiness) == TYPES | {"none"}
    for name in TYPES:
        rtype, owner = ext.readiness[name]
        assert owner == "dynamod-readiness" and rtype.description


def test_a_second_provider_of_a_type_is_a_clear_error(tmp_path: Path) -> None:
    class Impostor:
        @staticmethod
        def dynamod_readiness_types() -> list[ReadinessType]:
            return [ReadinessType("notify", lambda ctx: None)]  # type: ignore[arg-type,return-value]

    import dynamod

    dynamod.hookimpl(Impostor.dynamod_readiness_types)
    host = make_plugin_host(
        load_entrypoints=False,
        plugins=[("dynamod-readiness", dynamod_readiness.plugin), ("impostor", Impostor)],
    )
    cfg = load_config(tmp_path, collect_extensions(host))
    clashes = [
        d.message for d in cfg.errors if "readiness type 'notify' is provided by both" in d.message
    ]
    assert len(clashes) == 1
    assert "'dynamod-readiness'" in clashes[0] and "'impostor'" in clashes[0]


@pytest.mark.parametrize(
    ("readiness", "key", "message"),
    [
        ('type = "notify"\nwatchdog = "soon"', "readiness.watchdog", "invalid duration"),
        ('type = "notify"\nwatchdog = 0', "readiness.watchdog", "greater than zero"),
        ('type = "notify"\nport = 80', "readiness.port", "unknown key"),
        ('type = "tcp-port"', "readiness.port", "required"),
        ('type = "tcp-port"\nport = 0', "readiness.port", "1-65535"),
        ('type = "tcp-port"\nport = 65536', "readiness.port", "1-65535"),
        ('type = "tcp-port"\nport = "80"', "readiness.port", "1-65535"),
        ('type = "tcp-port"\nport = true', "readiness.port", "1-65535"),
        ('type = "tcp-port"\nport = 80\nhost = ""', "readiness.host", "host name or an IP"),
        ('type = "tcp-port"\nport = 80\nhost = "a b"', "readiness.host", "invalid host"),
        ('type = "tcp-port"\nport = 80\nhost = "::1::2"', "readiness.host", "invalid IPv6"),
        ('type = "tcp-port"\nport = 80\nhost = 7', "readiness.host", "host name or an IP"),
        ('type = "exec"', "readiness.check-exec", "required"),
        ('type = "exec"\ncheck-exec = []', "readiness.check-exec", "non-empty list"),
        ('type = "exec"\ncheck-exec = "true"', "readiness.check-exec", "non-empty list"),
        ('type = "exec"\ncheck-exec = [""]', "readiness.check-exec", "non-empty list"),
        (
            'type = "exec"\ncheck-exec = ["true"]\ncheck-timeout = "0s"',
            "readiness.check-timeout",
            "greater than zero",
        ),
        (
            'type = "exec"\ncheck-exec = ["true"]\ninterval = "x"',
            "readiness.interval",
            "invalid duration",
        ),
        ('type = "fd"\nfd = 2', "readiness.fd", "from 3 to 1023"),
        ('type = "fd"\nfd = 1024', "readiness.fd", "from 3 to 1023"),
        ('type = "fd"\nfd = "3"', "readiness.fd", "from 3 to 1023"),
    ],
)
def test_bad_options_are_config_errors(
    tmp_path: Path, readiness: str, key: str, message: str
) -> None:
    tree = ConfigTree(tmp_path)
    tree.simple("svc", "exec sleep 1", extra=f"[readiness]\n{readiness}\n")
    errors = [str(d) for d in load_config(tree.root, real_extensions()).errors]
    assert any(f"services/svc.toml: {key}:" in e and message in e for e in errors), errors


@pytest.mark.parametrize(
    "readiness",
    [
        'type = "notify"\nwatchdog = "10s"',
        'type = "tcp-port"\nport = 65535\nhost = "[::1]"',
        'type = "tcp-port"\nport = 1\nhost = "db.example.org"',
        'type = "exec"\ncheck-exec = ["pg_isready", "-q"]\ncheck-timeout = "2s"\ninterval = "500ms"',
        'type = "fd"\nfd = 1023',
    ],
)
def test_good_options_load(tmp_path: Path, readiness: str) -> None:
    tree = ConfigTree(tmp_path)
    tree.simple("svc", "exec sleep 1", extra=f"[readiness]\n{readiness}\n")
    cfg = load_config(tree.root, real_extensions())
    assert cfg.errors == []


# ------------------------------------------------------------ not installed


def test_builtin_only_names_the_plugin(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path)
    one_of_each(tree)
    cfg = load_config(tree.root)  # the host alone
    errors = [str(d) for d in cfg.errors]
    assert f"error: services/n.toml: service.type: readiness type 'notify' {NEEDS}" in errors
    for name, rtype in (("t", "tcp-port"), ("e", "exec"), ("f", "fd")):
        assert (
            f"error: services/{name}.toml: readiness.type: readiness type '{rtype}' {NEEDS}"
            in errors
        )
    assert set(cfg.services) == {"plain"}


@pytest.mark.parametrize(
    "how",
    [
        {"args": ["--no-plugins"]},
        {"env": {**os.environ, "DYNAMOD_DISABLE_PLUGINS": "dynamod-readiness"}},
    ],
    ids=["no-plugins", "disabled"],
)
def test_svmgr_without_the_plugin(tree: ConfigTree, svmgr: Callable[..., Svmgr], how: dict) -> None:
    one_of_each(tree)
    mgr = svmgr(**how)
    # The host runs what it can and names the missing distribution.
    assert mgr.wait_state("plain", ["running", "failed"])["state"] == "running"
    log = mgr.log()
    assert f"readiness type 'notify' {NEEDS}" in log
    for rtype in ("tcp-port", "exec", "fd"):
        assert f"readiness type '{rtype}' {NEEDS}" in log
    refused = mgr.status("n")  # a failed unit that says why, not a missing one
    assert refused["state"] == "failed"
    assert NEEDS in refused["load_error"]
