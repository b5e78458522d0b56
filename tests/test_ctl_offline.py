"""``dynamodctl check`` and ``plugins``, and plugins that add subcommands.

Plugins are real distributions: a ``NAME-1.0.dist-info`` with
``entry_points.txt`` plus a module in a directory put on PYTHONPATH, so
``importlib.metadata`` finds them exactly as it finds installed ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamod.testing import ConfigTree


def ctl(*args: str, path: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    if path is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(path), full_env.get("PYTHONPATH")])
        )
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "dynamod.ctl.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def make_dist(site: Path, dist: str, group: str, module: str, source: str) -> None:
    """A minimal installed distribution: metadata, one entry point, a module."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{dist} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


HELLO = """
    import typer

    import dynamod


    @dynamod.ctl_hookimpl
    def dynamodctl_register_commands(app):
        @app.command()
        def hello(ctx: typer.Context, who: str = typer.Option("world", "--who")) -> None:
            \"\"\"Say hello, and count the daemon's services when asked to.\"\"\"
            print(f"hello {who}")
            if ctx.obj.socket:
                with ctx.obj.connect() as conn:
                    body = conn.request("ListServices", "ServiceList")
                print(f"{body['total']} services")
"""


# --- check --------------------------------------------------------------------


def test_check_good_tree(tree: ConfigTree) -> None:
    tree.simple("base", "sleep 1")
    tree.simple("app", "sleep 1", extra='[dependencies]\nrequires = ["base"]\n')
    r = ctl("check", "--config-dir", str(tree.root))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == f"{tree.root}: 2 services, 1 supervisor; 0 errors, 0 warnings\n"
    # The directory may come from the environment, as for dynamod-svmgr.
    r = ctl("check", DYNAMOD_CONFIG_DIR=str(tree.root))
    assert r.returncode == 0 and r.stdout.startswith(f"{tree.root}: 2 services")


def test_check_cycle(tree: ConfigTree) -> None:
    tree.simple("a", "sleep 1", extra='[dependencies]\nrequires = ["b"]\n')
    tree.simple("b", "sleep 1", extra='[dependencies]\nrequires = ["c"]\n')
    tree.simple("c", "sleep 1", extra='[dependencies]\nrequires = ["a"]\n')
    r = ctl("check", "--config-dir", str(tree.root))
    assert r.returncode == 1
    errors = [line for line in r.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stdout
    assert "dependency cycle: a -> b -> c -> a" in errors[0]
    assert r.stdout.splitlines()[-1].endswith("; 1 error, 0 warnings")


def test_check_bad_key_and_missing_dir(tree: ConfigTree, tmp_path: Path) -> None:
    tree.service("web", '[service]\nname = "web"\nexec = ["/bin/true"]\nrestart-delay = "1s"\n')
    r = ctl("check", "--config-dir", str(tree.root))
    assert r.returncode == 1
    assert r.stdout.splitlines()[0].startswith(
        "error: services/web.toml: service.restart-delay: unknown key"
    )
    assert r.stderr == ""
    # A missing directory is an error for check (svmgr boots without one,
    # with a warning: see tests/test_config_loader.py).
    r = ctl("check", "--config-dir", str(tmp_path / "nope"))
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        f"error: {tmp_path / 'nope'}: configuration directory does not exist",
        f"{tmp_path / 'nope'}: 0 services, 1 supervisor; 1 error, 0 warnings",
    ]


def test_check_uses_daemon_plugins(tree: ConfigTree, tmp_path: Path) -> None:
    """A readiness type from a plugin of the ``dynamod`` group is known to
    check, and its option validator runs."""
    site = tmp_path / "site"
    make_dist(
        site,
        "ready-http",
        "dynamod",
        "ready_http",
        """
        import dynamod
        from dynamod.api import ReadinessType


        def check(options):
            url = options.get("url", "")
            return [] if url.startswith("http://") else [("url", "must start with http://")]


        @dynamod.hookimpl
        def dynamod_readiness_types():
            return [ReadinessType(name="http", create=lambda ctx: None, options=frozenset({"url"}), validate=check)]
        """,
    )
    tree.simple("web", "sleep 1", extra='[readiness]\ntype = "http"\nurl = "ftp://x"\n')
    r = ctl("check", "--config-dir", str(tree.root), path=site)
    assert r.returncode == 1
    assert "readiness.url: must start with http://" in r.stdout.splitlines()[0]
    # Without the plugin the type itself is unknown.
    r = ctl(
        "check", "--config-dir", str(tree.root), path=site, DYNAMOD_DISABLE_PLUGINS="ready-http"
    )
    assert r.returncode == 1 and "unknown readiness type 'http'" in r.stdout


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """dynamodctl run as uid/gid 65534 (the tests run as root, for whom
    every directory is readable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "dynamod.ctl.main", *args],
        capture_output=True, text=True, env=env, timeout=60,
    )


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory user 65534 can reach (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="dynamod-check-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_check_directory_problems(tmp_path: Path, public_dir: Path) -> None:
    """A missing config dir, a file given instead of it, one that cannot be
    read: errors (exit 1), not the service manager's boot-time warnings."""
    (tmp_path / "web.toml").write_text('[service]\nname = "web"\nexec = ["/bin/true"]\n')
    for path, message in [
        (tmp_path / "nope", "configuration directory does not exist"),
        (tmp_path / "web.toml", "configuration directory is a file, not a directory "
                                "(give the directory that holds services/ and supervisors/)"),
    ]:
        r = ctl("check", "--config-dir", str(path))
        assert (r.returncode, r.stderr) == (1, "")
        assert r.stdout.splitlines()[0] == f"error: {path}: {message}"

    locked = public_dir / "locked"
    ConfigTree(locked).simple("a", "sleep 1")
    locked.chmod(0o700)
    r = as_nobody("check", "--config-dir", str(locked))
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == f"error: {locked}: configuration directory cannot be read: Permission denied"

    # Readable, but its services/ (or one file) is not.
    locked.chmod(0o755)
    (locked / "services").chmod(0o700)
    r = as_nobody("check", "--config-dir", str(locked))
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == "error: services/: cannot read directory: Permission denied"
    (locked / "services").chmod(0o755)
    (locked / "services" / "a.toml").chmod(0o600)
    r = as_nobody("check", "--config-dir", str(locked))
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == "error: services/a.toml: cannot read file: Permission denied"


def test_check_warns_about_what_the_host_lacks(tree: ConfigTree, tmp_path: Path) -> None:
    """Programs are resolved as svmgr resolves them (the service's PATH);
    users and groups looked up. Warnings: the tree may be for another host."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tool").write_text("#!/bin/sh\n")
    (bin_dir / "tool").chmod(0o755)
    (bin_dir / "data").write_text("")
    (bin_dir / "sub").mkdir()

    def service(name: str, body: str) -> None:
        tree.service(name, f'[service]\nname = "{name}"\n{body}')

    service("missing", 'exec = ["/nonexistent/prog"]\n')
    service("not-in-path", 'exec = ["no-such-program-here"]\n')
    service("own-path", f'exec = ["tool"]\nenvironment = {{ PATH = "{bin_dir}" }}\n')
    service("data", f'exec = ["{bin_dir}/data"]\n')
    service("dir", f'exec = ["{bin_dir}/sub"]\n')
    service("stop", 'exec = ["/bin/true"]\n[shutdown]\nstop-exec = ["/nonexistent/stop"]\n')
    service("who", 'exec = ["/bin/true"]\n[service.user]\nuser = "no-such-user-here"\n'
                   'group = "no-such-group-here"\nsupplementary-groups = ["root", 4242, "nor-this-one"]\n')
    service("ids", 'exec = ["/bin/true"]\n[service.user]\nuser = 0\ngroup = 4242\n')
    service("uid", 'exec = ["/bin/true"]\n[service.user]\nuser = 4000000\n')
    r = ctl("check", "--config-dir", str(tree.root))
    assert (r.returncode, r.stderr) == (0, ""), r.stdout
    lines = r.stdout.splitlines()
    path = os.environ.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert lines[:-1] == [
        f"warning: services/data.toml: service.exec[0]: executable {bin_dir}/data not executable",
        f"warning: services/dir.toml: service.exec[0]: executable {bin_dir}/sub is a directory",
        "warning: services/missing.toml: service.exec[0]: executable /nonexistent/prog not found",
        f"warning: services/not-in-path.toml: service.exec[0]: executable 'no-such-program-here' "
        f"not found in PATH ({path})",
        "warning: services/stop.toml: shutdown.stop-exec[0]: executable /nonexistent/stop not found",
        "warning: services/uid.toml: service.user.user: unknown user '4000000' on this host",
        "warning: services/who.toml: service.user.user: unknown user 'no-such-user-here' on this host",
        "warning: services/who.toml: service.user.group: unknown group 'no-such-group-here' on this host",
        "warning: services/who.toml: service.user.supplementary-groups[2]: "
        "unknown group 'nor-this-one' on this host",
    ]
    assert lines[-1] == f"{tree.root}: 9 services, 1 supervisor; 0 errors, 9 warnings"


def test_check_json(tree: ConfigTree, tmp_path: Path) -> None:
    tree.service("web", '[service]\nname = "web"\nexec = ["/nonexistent/web"]\n\n'
                        '[restart]\ndelay = "fast"\n')
    tree.service("bad", "[service\n")
    site = tmp_path / "site"
    make_dist(site, "broken-plugin", "dynamod", "broken_plugin", "raise RuntimeError('no')\n")
    r = ctl("check", "--config-dir", str(tree.root), "--json", path=site)
    assert (r.returncode, r.stderr) == (1, "")
    findings = [json.loads(line) for line in r.stdout.splitlines()]
    assert findings[0]["file"] == "<plugins>" and findings[0]["line"] is None
    assert findings[0]["severity"] == "warning" and "broken-plugin" in findings[0]["message"]
    assert findings[1:] == [
        {"severity": "error", "file": "services/bad.toml", "key": "", "line": 1,
         "message": findings[1]["message"]},
        {"severity": "error", "file": "services/web.toml", "key": "restart.delay", "line": 6,
         "message": "invalid duration 'fast' (examples: 500ms, 10s, 2m)"},
    ]
    assert findings[1]["message"].startswith("invalid TOML: ")
    # Refused web: no host warning for a service that is not loaded; with
    # the error fixed, the warning has its line too.
    tree.service("web", '[service]\nname = "web"\nexec = ["/nonexistent/web"]\n')
    tree.remove("bad")
    r = ctl("check", "--config-dir", str(tree.root), "--json")
    assert r.returncode == 0
    assert [json.loads(line) for line in r.stdout.splitlines()] == [
        {"severity": "warning", "file": "services/web.toml", "key": "service.exec[0]", "line": 3,
         "message": "executable /nonexistent/web not found"},
    ]


# --- plugins and CLI extensions ----------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    make_dist(site, "ctl-hello", "dynamodctl", "ctl_hello", HELLO)
    make_dist(
        site, "ctl-broken", "dynamodctl", "ctl_broken", "raise RuntimeError('boom at import')\n"
    )
    return site


def test_plugin_subcommand(site: Path, tree: ConfigTree, svmgr) -> None:
    r = ctl("--help", path=site)
    assert r.returncode == 0, r.stderr
    assert "hello" in r.stdout.split("Commands:")[1]
    r = ctl("hello", "--who", "dynamod", path=site)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello dynamod\n", "")
    # Plugin commands get the global --socket through ctx.obj.
    tree.simple("one", "sleep 100")
    mgr = svmgr()
    r = ctl("--socket", mgr.socket, "hello", path=site)
    assert (r.returncode, r.stdout) == (0, "hello world\n1 services\n"), r.stderr


def test_broken_plugin_does_not_break_dynamodctl(site: Path, tree: ConfigTree, svmgr) -> None:
    tree.simple("one", "sleep 100")
    mgr = svmgr()
    mgr.wait_state("one", "running")
    for args in (["list"], ["tree"], ["status", "one"], ["list", "--socket", mgr.socket, "--json"]):
        r = ctl("--socket", mgr.socket, *args, path=site)
        assert r.returncode == 0, (args, r.stderr)
        assert r.stderr == ""
    r = ctl("--help", path=site)
    assert r.returncode == 0 and r.stderr == ""
    # An unknown command might have been the broken plugin's: say so, once.
    r = ctl("frobnicate", path=site)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("dynamodctl: No such command 'frobnicate'")
    assert lines[1] == (
        "dynamodctl: warning: plugin 'ctl-broken' failed to load; "
        "the command may be theirs (see 'dynamodctl plugins')"
    )
    # Without broken plugins, no such warning.
    r = ctl("frobnicate", path=site, DYNAMOD_DISABLE_PLUGINS="ctl-broken")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1


def test_plugin_cannot_replace_builtin(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_dist(
        site,
        "ctl-evil",
        "dynamodctl",
        "ctl_evil",
        """
        import dynamod


        @dynamod.ctl_hookimpl
        def dynamodctl_register_commands(app):
            @app.command("check")
            def check() -> None:
                print("evil")

            @app.command("ok-too")
            def ok_too() -> None:
                print("never registered")
        """,
    )
    make_dist(site, "ctl-hello", "dynamodctl", "ctl_hello", HELLO)
    (tmp_path / "empty").mkdir()
    r = ctl("check", "--config-dir", str(tmp_path / "empty"), path=site)
    assert "evil" not in r.stdout and r.returncode == 0
    r = ctl("plugins", "--json", path=site)
    report = json.loads(r.stdout)
    assert r.returncode == 1
    assert [p["name"] for p in report["problems"]] == ["ctl-evil"]
    assert "already taken" in report["problems"][0]["message"]
    # All of the bad plugin's commands were rolled back; the good one works.
    r = ctl("ok-too", path=site)
    assert r.returncode == 2
    r = ctl("hello", path=site)
    assert (r.returncode, r.stdout) == (0, "hello world\n")


def test_plugins_command(site: Path) -> None:
    r = ctl("plugins", "--json", path=site)
    assert r.returncode == 1  # a plugin failed to load
    report = json.loads(r.stdout)
    ctl_plugins = [p for p in report["plugins"] if p["group"] == "dynamodctl"]
    assert ctl_plugins == [
        {
            "group": "dynamodctl",
            "name": "ctl-hello",
            "distribution": "ctl-hello",
            "version": "1.0",
            "hooks": ["dynamodctl_register_commands"],
        }
    ]
    assert all(p["group"] == "dynamod" for p in report["plugins"] if p not in ctl_plugins)
    (problem,) = report["problems"]
    assert problem["group"] == "dynamodctl" and problem["name"] == "ctl-broken"
    assert "RuntimeError: boom at import" in problem["message"]

    r = ctl("plugins", path=site)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["GROUP", "NAME", "DISTRIBUTION", "VERSION", "HOOKS"]
    assert ["dynamodctl", "ctl-hello", "ctl-hello", "1.0", "dynamodctl_register_commands"] in [
        line.split() for line in lines
    ]
    assert lines[-2] == "problems:"
    assert lines[-1].startswith(
        "  dynamodctl: plugin 'ctl-broken': failed to load ctl_broken: RuntimeError: boom"
    )

    r = ctl("plugins", path=site, DYNAMOD_PLUGINS_AUTOLOAD="0")
    assert r.returncode == 0
    assert r.stdout == "no plugins loaded\n(entry points not loaded: DYNAMOD_PLUGINS_AUTOLOAD=0)\n"
