"""The plugin's own tests, written the way a plugin author writes them.

The first tests call the hook in-process (no installation needed); the
others run a real ``dynamod-svmgr`` through ``dynamod.testing``, which finds
the plugin through its entry point, so they need the distribution installed
(``pip install -e .``) and are skipped otherwise.
"""

from __future__ import annotations

import socket
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from dynamod_readiness_http import plugin

from dynamod.config.extensions import collect_extensions
from dynamod.config.loader import load_config
from dynamod.plugins import make_plugin_host
from dynamod.testing import ConfigTree, Svmgr

INSTALLED = any(ep.name == "dynamod-readiness-http" for ep in entry_points(group="dynamod"))
needs_install = pytest.mark.skipif(not INSTALLED, reason="install the distribution first")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def extensions():  # the plugin registered by hand, as the host would
    host = make_plugin_host(load_entrypoints=False, plugins=[("dynamod-readiness-http", plugin)])
    return collect_extensions(host)


def logs(mgr: Svmgr, name: str) -> list[str]:
    """The service's captured output, including the detector's own lines."""
    return [text for _ts, text in mgr.request("GetLogs", {"name": name})["lines"]]


def web(tree: ConfigTree, port: int, readiness: str, delay: float = 0.5) -> None:
    """A service that starts answering HTTP after ``delay`` seconds."""
    server = f"exec {sys.executable} -m http.server {port} --bind 127.0.0.1"
    tree.simple(
        "web",
        f"sleep {delay}; {server}",
        extra=f'[readiness]\ntype = "http"\n{readiness}\n[restart]\npolicy = "temporary"\n',
    )


def test_the_hook_provides_the_type() -> None:
    ext = extensions()
    rtype, owner = ext.readiness["http"]
    assert owner == "dynamod-readiness-http"
    assert rtype.options == {"url", "status"}


@pytest.mark.parametrize(
    ("options", "key", "message"),
    [
        ("", "readiness.url", "required"),
        ('url = "https://127.0.0.1/"', "readiness.url", "only http://"),
        ('url = "http://127.0.0.1:99999/"', "readiness.url", "invalid URL"),
        ('url = "http://127.0.0.1/"\nstatus = 42', "readiness.status", "100-599"),
        ('url = "http://127.0.0.1/"\nmethod = "HEAD"', "readiness.method", "unknown key"),
    ],
)
def test_bad_options_are_config_errors(
    tmp_path: Path, options: str, key: str, message: str
) -> None:
    tree = ConfigTree(tmp_path / "etc")
    tree.simple("web", "sleep 1", extra=f'[readiness]\ntype = "http"\n{options}\n')
    errors = [str(d) for d in load_config(tree.root, extensions()).errors]
    assert any(key in e and message in e for e in errors), errors


@needs_install
def test_ready_when_the_server_answers(tmp_path: Path) -> None:
    port = free_port()
    tree = ConfigTree(tmp_path / "etc")
    web(tree, port, f'url = "http://127.0.0.1:{port}/"')
    with Svmgr(tree.root, tmp_path / "run") as mgr:
        info = mgr.wait_state("web", ["running", "failed"])
        assert info["state"] == "running", info["reason"]
        # Before the server listened, the detector said why it was waiting.
        assert any("http: GET" in line for line in logs(mgr, "web"))


@needs_install
def test_expected_status(tmp_path: Path) -> None:
    port = free_port()
    tree = ConfigTree(tmp_path / "etc")
    web(tree, port, f'url = "http://127.0.0.1:{port}/no-such-page"\nstatus = 404', delay=0)
    with Svmgr(tree.root, tmp_path / "run") as mgr:
        assert mgr.wait_state("web", ["running", "failed"])["state"] == "running"


@needs_install
def test_wrong_status_times_out(tmp_path: Path) -> None:
    port = free_port()
    tree = ConfigTree(tmp_path / "etc")
    web(tree, port, f'url = "http://127.0.0.1:{port}/no-such-page"\ntimeout = "1s"', delay=0)
    with Svmgr(tree.root, tmp_path / "run") as mgr:
        info = mgr.wait_state("web", "failed")
        assert "readiness timeout after 1s" in info["reason"]
        assert any("answered 404, expecting 200" in line for line in logs(mgr, "web"))
