"""A third-party readiness plugin, installed the way an outsider's would be.

``examples/readiness-http`` is built into a wheel, as are dynamod itself and
dynamod-readiness, and installed into fresh virtual environments that see
nothing of the development environment. A dynamod-svmgr run from such an
environment finds exactly the plugins installed there.

Wheels are built once per test session with ``uv build`` (hatchling comes
from uv's cache, or from PyPI the first time); installs try ``--offline``
first and fall back to the index.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from dynamod.testing import ConfigTree, Svmgr

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "readiness-http"
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")

pytestmark = pytest.mark.skipif(UV is None, reason="uv not available")

# A second distribution claiming the type "http" as well.
CLONE_PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "dynamod-http-clone"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["dynamod", "dynamod-readiness-http"]

[project.entry-points.dynamod]
dynamod-http-clone = "dynamod_http_clone"

[tool.hatch.build.targets.wheel]
packages = ["dynamod_http_clone"]
"""

CLONE_MODULE = '''
"""Claims the readiness type "http" too: a deliberate clash."""
import dynamod
from dynamod.api import ReadinessType
from dynamod_readiness_http.detector import HttpDetector


@dynamod.hookimpl
def dynamod_readiness_types():
    return [ReadinessType("http", HttpDetector, frozenset({"url", "status"}))]
'''


def clean_env() -> dict[str, str]:
    """The environment without anything pointing into the dev venv."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env.pop("DYNAMOD_DISABLE_PLUGINS", None)
    env.pop("DYNAMOD_PLUGINS_AUTOLOAD", None)
    return env


def uv(*args: str | os.PathLike[str], offline_first: bool = True) -> None:
    cmd = [str(UV), *map(str, args)]
    if offline_first:
        done = subprocess.run([*cmd, "--offline"], capture_output=True, text=True, env=clean_env())
        if done.returncode == 0:
            return
    done = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    clone = tmp_path_factory.mktemp("clone-src")
    (clone / "pyproject.toml").write_text(CLONE_PYPROJECT)
    (clone / "dynamod_http_clone").mkdir()
    (clone / "dynamod_http_clone" / "__init__.py").write_text(CLONE_MODULE)
    for src in (ROOT, ROOT / "plugins" / "readiness", EXAMPLE, clone):
        uv("build", "--wheel", "-q", "--out-dir", out, src)
    found = {p.name.split("-")[0]: p for p in out.glob("*.whl")}
    assert set(found) == {
        "dynamod",
        "dynamod_readiness",
        "dynamod_readiness_http",
        "dynamod_http_clone",
    }
    return found


def make_venv(path: Path, wheels: list[Path], extra: tuple[str, ...] = ()) -> Path:
    uv("venv", "-q", "--python", sys.executable, path, offline_first=False)
    python = path / "bin" / "python"
    # Wheel files by path: a same-named project on the index can never win.
    uv("pip", "install", "-q", "--python", python, *wheels, *extra)
    return python


@pytest.fixture(scope="session")
def http_python(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dynamod + dynamod-readiness-http (+ pytest for the author's tests)."""
    venv = tmp_path_factory.mktemp("venv-http") / "venv"
    return make_venv(venv, [wheels["dynamod"], wheels["dynamod_readiness_http"]], ("pytest>=8",))


@pytest.fixture(scope="session")
def readiness_python(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dynamod + dynamod-readiness, without the http plugin."""
    venv = tmp_path_factory.mktemp("venv-readiness") / "venv"
    return make_venv(venv, [wheels["dynamod"], wheels["dynamod_readiness"]])


@pytest.fixture(scope="session")
def clash_python(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dynamod + the http plugin + a second distribution claiming "http"."""
    venv = tmp_path_factory.mktemp("venv-clash") / "venv"
    return make_venv(
        venv, [wheels["dynamod"], wheels["dynamod_readiness_http"], wheels["dynamod_http_clone"]]
    )


def plugins_of(python: Path) -> list[str]:
    code = "from importlib.metadata import entry_points; print(*sorted(e.name for e in entry_points(group='dynamod')))"
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=clean_env(), check=True
    )
    return out.stdout.split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_service(tree: ConfigTree, port: int, delay: float = 0.5) -> None:
    tree.service(
        "web",
        f"""
        [service]
        name = "web"
        exec = ["/bin/sh", "-c", "sleep {delay}; exec {sys.executable} -m http.server {port} --bind 127.0.0.1"]

        [readiness]
        type = "http"
        url = "http://127.0.0.1:{port}/"
        status = 200
        timeout = "20s"
        """,
    )


def check_config(python: Path, config_dir: Path) -> list[str]:
    """Configuration errors as the given environment's dynamod sees them."""
    code = textwrap.dedent(
        f"""
        from dynamod.config.extensions import collect_extensions
        from dynamod.config.loader import load_config
        from dynamod.plugins import make_plugin_host
        for d in load_config({str(config_dir)!r}, collect_extensions(make_plugin_host())).errors:
            print(d)
        """
    )
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=clean_env(), check=True
    )
    return out.stdout.splitlines()


def test_fresh_venvs_see_only_what_was_installed(
    http_python: Path, readiness_python: Path, clash_python: Path
) -> None:
    assert plugins_of(http_python) == ["dynamod-readiness-http"]
    assert plugins_of(readiness_python) == ["dynamod-readiness"]
    assert plugins_of(clash_python) == ["dynamod-http-clone", "dynamod-readiness-http"]


def test_http_service_becomes_ready(http_python: Path, tmp_path: Path) -> None:
    port = free_port()
    tree = ConfigTree(tmp_path / "etc")
    http_service(tree, port)
    with Svmgr(tree.root, tmp_path / "run", python=http_python, env=clean_env()) as mgr:
        info = mgr.wait_state("web", ["running", "failed"], timeout=30)
        assert info["state"] == "running", info["reason"]
        lines = [x for _t, x in mgr.request("GetLogs", {"name": "web"})["lines"]]
        assert any(x.startswith(f"[dynamod] http: GET http://127.0.0.1:{port}/:") for x in lines), (
            lines
        )
        # The detector started polling before the server answered.
        assert "web: waiting-ready -> running" in mgr.log()


def test_the_authors_own_tests_pass_when_installed(http_python: Path) -> None:
    # A short --basetemp of its own: the control socket path must fit into
    # sun_path, and the inner run must not prune this session's directories.
    basetemp = tempfile.mkdtemp(prefix="dm-http-")
    try:
        done = subprocess.run(
            [http_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}"],
            cwd=EXAMPLE,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=300,
        )
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped" not in done.stdout, done.stdout  # the installed-only tests ran too


def test_without_the_plugin_the_type_is_unknown(readiness_python: Path, tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path / "etc")
    http_service(tree, free_port())
    message = (
        "services/web.toml: readiness.type: unknown readiness type 'http' "
        "(known types: exec, fd, none, notify, tcp-port; installed plugins: dynamod-readiness)"
    )
    assert check_config(readiness_python, tree.root) == [f"error: {message}"]
    dynamodctl = readiness_python.parent / "dynamodctl"
    done = subprocess.run(
        [dynamodctl, "check", "--config-dir", tree.root],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert done.returncode != 0 and message in done.stdout + done.stderr, done.stdout + done.stderr
    with Svmgr(tree.root, tmp_path / "run", python=readiness_python, env=clean_env()) as mgr:
        assert message in mgr.log()


def test_two_plugins_claiming_a_type_is_an_error(clash_python: Path, tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path / "etc")
    http_service(tree, free_port())
    errors = check_config(clash_python, tree.root)
    assert len(errors) == 1, errors
    assert errors[0].startswith("error: <plugins>: readiness type 'http' is provided by both")
    assert "'dynamod-http-clone'" in errors[0] and "'dynamod-readiness-http'" in errors[0]


def test_the_dynamodctl_command_group(http_python: Path, tmp_path: Path) -> None:
    # The same distribution registers a command under the "dynamodctl" group.
    dynamodctl = http_python.parent / "dynamodctl"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.05)

        def ctl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [dynamodctl, *args], capture_output=True, text=True, env=clean_env(), timeout=60
            )

        ok = ctl("http-probe", url)
        assert (ok.returncode, ok.stdout.strip()) == (0, f"{url}: 200"), ok.stderr
        wrong = ctl("http-probe", url + "missing")
        assert wrong.returncode == 1 and "404 (expected 200)" in wrong.stdout
        listed = ctl("plugins").stdout
        rows = {tuple(line.split()[:2]) for line in listed.splitlines()}
        assert {
            ("dynamod", "dynamod-readiness-http"),
            ("dynamodctl", "dynamod-readiness-http"),
        } <= rows
    finally:
        server.terminate()
        server.wait()
