"""The loader on real files: every error class, named by file and key."""

from __future__ import annotations

import signal
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from dynamod.api import ConfigSection, ReadinessType, ServiceDefinition
from dynamod.config.extensions import Extensions, builtin_extensions
from dynamod.config.loader import check_or_raise, load_config
from dynamod.config.model import ConfigError, Diagnostic, SystemConfig
from dynamod.config.units import parse_size

DATA = Path(__file__).parent / "data" / "config"


# -- helpers -----------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text))
    return root


def service(name: str, body: str = "", exec_: str = '["/bin/true"]') -> str:
    """A minimal valid service file plus ``body`` (more tables or keys)."""
    return f'[service]\nname = "{name}"\nexec = {exec_}\n' + dedent(body)


def load(tmp_path: Path, files: dict[str, str], ext: Extensions | None = None) -> SystemConfig:
    return load_config(write(tmp_path, files), ext)


def messages(cfg: SystemConfig, severity: str = "error") -> list[str]:
    """Diagnostics as ``file: key: message`` lines."""
    return [
        f"{d.file}: {d.key}: {d.message}" if d.key else f"{d.file}: {d.message}"
        for d in cfg.diagnostics
        if d.severity == severity
    ]


def one_error(cfg: SystemConfig) -> Diagnostic:
    assert len(cfg.errors) == 1, messages(cfg)
    return cfg.errors[0]


def _no_detector(ctx: Any) -> Any:
    raise NotImplementedError


def _check_port(table: dict[str, Any]) -> list[tuple[str, str]]:
    port = table.get("port")
    if port is None:
        return [("port", "missing required key")]
    if not isinstance(port, int) or not 0 < port < 65536:
        return [("port", f"invalid port {port!r}")]
    return []


def _check_cgroup(table: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for key, value in table.items():
        if key != "memory-max":
            problems.append((key, "unknown key"))
            continue
        try:
            parse_size(value, allow_infinity=True)
        except ValueError as exc:
            problems.append((key, str(exc)))
    return problems


def fake_extensions() -> Extensions:
    """Stand-ins for the readiness and isolation plugins' contributions."""
    ext = builtin_extensions()
    ext.readiness["notify"] = (ReadinessType("notify", _no_detector), "fake-readiness")
    ext.readiness["tcp-port"] = (
        ReadinessType("tcp-port", _no_detector, frozenset({"port", "host"}), _check_port),
        "fake-readiness",
    )
    ext.sections["cgroup"] = (ConfigSection("cgroup", _check_cgroup), "fake-isolation")
    return ext


EXT = fake_extensions()


# -- whole trees -------------------------------------------------------------


def test_full_tree_every_field() -> None:
    cfg = check_or_raise(load_config(DATA / "full"))
    assert sorted(cfg.services) == ["cache", "db", "network", "proxy", "web"]
    web = cfg.services["web"]
    assert web.source == "services/web.toml"
    assert web.exec == ("/usr/bin/web", "--port", "8080")
    assert (web.type, web.supervisor, web.enabled) == ("forking", "apps", False)
    assert web.description == "The web front end"
    assert web.workdir == "/srv/web"
    assert web.environment == {"LANG": "C.UTF-8", "MODE": "production"}
    assert web.environment_file == ("/etc/default/web", "-/etc/default/web.local")
    assert web.pid_file == "/run/web.pid"
    assert (web.user, web.group, web.supplementary_groups) == ("www-data", "33", ("ssl-cert", "adm"))
    assert (web.restart.policy, web.restart.delay) == ("transient", 0.5)
    assert (web.restart.max_restarts, web.restart.max_restart_window) == (3, 120.0)
    assert (web.readiness.type, web.readiness.timeout, web.readiness.options) == ("none", 90.0, {})
    deps = web.dependencies
    assert (deps.requires, deps.wants, deps.after, deps.before) == (
        ("db",), ("cache",), ("network",), ("proxy",)
    )
    assert web.shutdown.stop_signal == signal.SIGQUIT
    assert web.shutdown.stop_timeout == 1.5
    assert web.shutdown.stop_exec == ("/usr/bin/web", "--stop")
    assert cfg.services["cache"].environment_file == ("-/etc/default/cache",)

    apps = cfg.supervisors["apps"]
    assert (apps.parent, apps.strategy, apps.max_restarts, apps.max_restart_window) == (
        "root", "rest-for-one", 2, 10.0
    )


def test_defaults(tmp_path: Path) -> None:
    cfg = check_or_raise(load(tmp_path, {"services/a.toml": service("a")}))
    a = cfg.services["a"]
    assert (a.type, a.supervisor, a.enabled, a.description) == ("simple", "root", True, "")
    assert (a.restart.policy, a.restart.delay, a.restart.max_restarts) == ("permanent", 1.0, 5)
    assert a.restart.max_restart_window == 60.0
    assert (a.readiness.type, a.readiness.timeout) == ("none", 30.0)
    assert (a.shutdown.stop_signal, a.shutdown.stop_timeout, a.shutdown.stop_exec) == (15, 10.0, ())
    root = cfg.supervisors["root"]
    assert (root.parent, root.strategy, root.max_restarts, root.max_restart_window) == (
        None, "one-for-one", 5, 60.0
    )
    assert root.source == "<builtin>"


def test_missing_directories_are_fine(tmp_path: Path) -> None:
    cfg = load_config(tmp_path)
    assert cfg.diagnostics == []
    assert cfg.services == {}
    assert list(cfg.supervisors) == ["root"]


def test_missing_config_dir_is_a_warning(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "typo")
    assert cfg.errors == []
    assert "does not exist" in cfg.warnings[0].message


def test_only_toml_files_are_read(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "services/a.toml": service("a"),
        "services/README": "not toml",
        "services/a.toml.orig": "garbage [",
        "services/.#a.toml": "garbage [",
    })
    assert cfg.diagnostics == []
    assert list(cfg.services) == ["a"]


def test_many_errors_in_many_files_reported_at_once() -> None:
    cfg = load_config(DATA / "broken")
    got = messages(cfg)
    expected = [
        "services/syntax.toml: invalid TOML:",
        "supervisors/apps.toml: supervisor.strategy: invalid value 'all-for-one'",
        "supervisors/apps.toml: supervisor.parent: unknown parent supervisor 'missing'",
        "services/api.toml: service.exec: expected an array of strings, got string",
        "services/api.toml: service.type: invalid value 'daemon'",
        "services/web.toml: restart.delay: invalid duration 'fast' (examples: 500ms, 10s, 2m)",
        "services/worker.toml: shutdown.stop-signal: unknown signal 'SIGFOO'",
        "services/worker.toml: shutdown.stop_timeout: unknown key (did you mean 'stop-timeout'?)",
        "services/worker.toml: service.supervisor: unknown supervisor 'nope'",
        "services/worker.toml: dependencies.requires[0]: requires unknown service 'ghost'",
    ]
    for prefix in expected:
        assert any(m.startswith(prefix) for m in got), (prefix, got)
    assert len(got) == len(expected), got
    # Services with errors are left out, the valid root supervisor stays.
    assert cfg.services == {}
    assert list(cfg.supervisors) == ["root"]
    with pytest.raises(ConfigError) as info:
        check_or_raise(cfg)
    assert len(info.value.diagnostics) == len(expected)
    assert "services/web.toml: restart.delay: invalid duration 'fast'" in str(info.value)


def test_load_is_deterministic() -> None:
    assert load_config(DATA / "broken") == load_config(DATA / "broken")


# -- file level --------------------------------------------------------------


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"services/bad.toml": '[service]\nname = "bad"\nexec = [1, \n= 2\n'})
    err = one_error(cfg)
    assert err.file == "services/bad.toml"
    assert err.message.startswith("invalid TOML:")
    assert "line" in err.message


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "services" / "dir.toml").mkdir(parents=True)
    err = one_error(load_config(tmp_path))
    assert err.file == "services/dir.toml"
    assert err.message == "is a directory, not a regular file (only regular files are read)"


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "latin.toml").write_bytes(b'[service]\nname = "caf\xe9"\n')
    err = one_error(load_config(tmp_path))
    assert err.file == "services/latin.toml"
    assert "UTF-8" in err.message or "TOML" in err.message


# -- [service] -----------------------------------------------------------------


def test_missing_service_table(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": "[restart]\npolicy = 'transient'\n"}))
    assert (err.file, err.key) == ("services/x.toml", "service")
    assert "missing required table [service]" in err.message


def test_missing_service_table_other_tables_still_checked(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"services/x.toml": "[restart]\npolicy = 'sometimes'\n[shutdown]\nstop-signal = 'NOPE'\n"})
    assert [d.key for d in cfg.errors] == ["service", "restart.policy", "shutdown.stop-signal"]


def test_missing_name(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": "[service]\nexec = ['/bin/true']\n"}))
    assert (err.file, err.key, err.message) == ("services/x.toml", "service.name", "missing required key")


@pytest.mark.parametrize("name", ["-web", "web server", "web/1", "", "wéb", "web\n"])
def test_invalid_name(tmp_path: Path, name: str) -> None:
    text = f"[service]\nname = {name!r}\nexec = ['/bin/true']\n".replace("'", '"')
    if "\n" in name:
        text = '[service]\nname = "web\\n"\nexec = ["/bin/true"]\n'
    err = one_error(load(tmp_path, {"services/x.toml": text}))
    assert (err.file, err.key) == ("services/x.toml", "service.name")
    assert "invalid name" in err.message


def test_valid_unusual_names(tmp_path: Path) -> None:
    files = {f"services/{i}.toml": service(n) for i, n in enumerate(["getty@tty1", "a.b_c-d", "9p"])}
    cfg = check_or_raise(load(tmp_path, files))
    assert sorted(cfg.services) == ["9p", "a.b_c-d", "getty@tty1"]


@pytest.mark.parametrize(
    ("exec_", "key", "message"),
    [
        ('"/bin/true"', "service.exec", "expected an array of strings, got string"),
        ("[]", "service.exec", "must not be empty"),
        ('["/bin/echo", 1]', "service.exec[1]", "expected a string, got integer"),
        ('[""]', "service.exec[0]", "the program must not be empty"),
    ],
)
def test_bad_exec(tmp_path: Path, exec_: str, key: str, message: str) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", exec_=exec_)}))
    assert (err.file, err.key, err.message) == ("services/x.toml", key, message)


def test_missing_exec(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": '[service]\nname = "x"\n'}))
    assert (err.key, err.message) == ("service.exec", "missing required key")


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("description = 5", "service.description", "expected a string, got integer"),
        ("supervisor = ['a']", "service.supervisor", "expected a string, got array"),
        ("enabled = 'yes'", "service.enabled", "expected a boolean (true or false), got string"),
        ("type = 'daemon'", "service.type", "invalid value 'daemon' (expected one of: simple, oneshot, forking, notify)"),
        ("workdir = 'srv'", "service.workdir", "must be an absolute path, got 'srv'"),
        ("environment = 'A=1'", "service.environment", "expected a table, got string"),
        ("environment = { A = 1 }", "service.environment.A", "expected a string, got integer"),
        ("environment-file = 'env'", "service.environment-file", "must be an absolute path, got 'env'"),
        ("environment-file = ['/ok', '-rel']", "service.environment-file[1]", "must be an absolute path, got '-rel'"),
        ("environment-file = 3", "service.environment-file", "expected a string or an array of strings, got integer"),
        ("pid-file = 'x.pid'\ntype = 'forking'", "service.pid-file", "must be an absolute path, got 'x.pid'"),
        ("restart = 'always'", "service.restart", "unknown key"),
    ],
)
def test_service_key_errors(tmp_path: Path, body: str, key: str, message: str) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", body)}))
    assert (err.file, err.key, err.message) == ("services/x.toml", key, message)


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "work-dir = '/srv'\n")}))
    assert (err.key, err.message) == ("service.work-dir", "unknown key (did you mean 'workdir'?)")


@pytest.mark.parametrize(
    ("table", "key"),
    [("restart", "policyy"), ("readiness", "port"), ("dependencies", "require"), ("shutdown", "signal"),
     ("service.user", "uid")],
)
def test_unknown_key_in_every_table(tmp_path: Path, table: str, key: str) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", f"[{table}]\n{key} = 1\n")}))
    assert err.file == "services/x.toml"
    assert err.key == f"{table}.{key}"
    assert err.message.startswith("unknown key")


def test_user_forms(tmp_path: Path) -> None:
    body = "[service.user]\nuser = 0\ngroup = 'wheel'\nsupplementary-groups = ['audio', 44]\n"
    cfg = check_or_raise(load(tmp_path, {"services/x.toml": service("x", body)}))
    x = cfg.services["x"]
    assert (x.user, x.group, x.supplementary_groups) == ("0", "wheel", ("audio", "44"))


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("user = true", "service.user.user", "expected a string or an integer id, got boolean"),
        ("group = -1", "service.user.group", "must not be negative, got -1"),
        ("user = ''", "service.user.user", "must not be empty"),
        ("supplementary-groups = 'audio'", "service.user.supplementary-groups", "expected an array of strings, got string"),
    ],
)
def test_user_errors(tmp_path: Path, body: str, key: str, message: str) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "[service.user]\n" + body)}))
    assert (err.key, err.message) == (key, message)


def test_user_must_be_a_table(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "user = 'nobody'\n")}))
    assert (err.key, err.message) == ("service.user", "expected a table, got string")


def test_pid_file_for_other_types_warns(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"services/x.toml": service("x", "pid-file = '/run/x.pid'\n")})
    assert cfg.errors == []
    assert messages(cfg, "warning") == [
        "services/x.toml: service.pid-file: only used by type 'forking' (this service is 'simple')"
    ]
    assert cfg.services["x"].pid_file == "/run/x.pid"  # warnings do not drop the service


# -- [restart], [shutdown] -----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("delay = 'fast'", "restart.delay", "invalid duration 'fast' (examples: 500ms, 10s, 2m)"),
        ("delay = true", "restart.delay", "expected a duration (a string such as '10s' or a number of seconds), got boolean"),
        ("policy = 'always'", "restart.policy", "invalid value 'always' (expected one of: permanent, transient, temporary)"),
        ("max-restarts = -1", "restart.max-restarts", "must be at least 0, got -1"),
        ("max-restarts = '5'", "restart.max-restarts", "expected an integer, got string"),
        ("max-restarts = 2.0", "restart.max-restarts", "expected an integer, got float"),
        ("max-restart-window = '0s'", "restart.max-restart-window", "must be greater than zero, got '0s'"),
    ],
)
def test_restart_errors(tmp_path: Path, body: str, key: str, message: str) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "[restart]\n" + body)}))
    assert (err.file, err.key, err.message) == ("services/x.toml", key, message)


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("stop-signal = 'SIGFOO'", "shutdown.stop-signal", "unknown signal 'SIGFOO' (examples: SIGTERM, TERM, 15)"),
        ("stop-signal = 99", "shutdown.stop-signal", "unknown signal number 99 (examples: SIGTERM, TERM, 15)"),
        ("stop-timeout = '-1s'", "shutdown.stop-timeout", "invalid duration '-1s' (examples: 500ms, 10s, 2m)"),
        ("stop-exec = '/bin/stop'", "shutdown.stop-exec", "expected an array of strings, got string"),
    ],
)
def test_shutdown_errors(tmp_path: Path, body: str, key: str, message: str) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "[shutdown]\n" + body)}))
    assert (err.file, err.key, err.message) == ("services/x.toml", key, message)


def test_shutdown_values(tmp_path: Path) -> None:
    body = "[shutdown]\nstop-signal = 'hup'\nstop-timeout = 0\nstop-exec = []\n"
    x = check_or_raise(load(tmp_path, {"services/x.toml": service("x", body)})).services["x"]
    assert (x.shutdown.stop_signal, x.shutdown.stop_timeout, x.shutdown.stop_exec) == (1, 0.0, ())


# -- [readiness] -------------------------------------------------------------


def test_readiness_type_needs_plugin(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "[readiness]\ntype = 'tcp-port'\nport = 80\n")}))
    assert (err.file, err.key) == ("services/x.toml", "readiness.type")
    assert err.message == (
        "readiness type 'tcp-port' needs the dynamod-readiness plugin, which is not loaded; "
        "install it from this repository: .venv/bin/uv pip install -e plugins/readiness"
    )


def test_unknown_readiness_type_lists_known(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "[readiness]\ntype = 'http'\n")}))
    assert err.key == "readiness.type"
    assert "unknown readiness type 'http'" in err.message and "known types: none" in err.message


def test_notify_service_defaults_to_notify_readiness(tmp_path: Path) -> None:
    files = {"services/x.toml": service("x", "type = 'notify'\n")}
    cfg = check_or_raise(load(tmp_path, files, EXT))
    assert cfg.services["x"].readiness.type == "notify"
    # Without the plugin, the implied type is what is missing.
    err = one_error(load_config(tmp_path))
    assert (err.key, err.message) == (
        "service.type",
        "readiness type 'notify' needs the dynamod-readiness plugin, which is not loaded; "
        "install it from this repository: .venv/bin/uv pip install -e plugins/readiness",
    )


def test_notify_service_with_other_readiness(tmp_path: Path) -> None:
    body = "type = 'notify'\n[readiness]\ntype = 'none'\n"
    err = one_error(load(tmp_path, {"services/x.toml": service("x", body)}, EXT))
    assert (err.file, err.key) == ("services/x.toml", "readiness.type")
    assert err.message == "service type 'notify' needs readiness type 'notify', got 'none'"


def test_oneshot_with_readiness_none(tmp_path: Path) -> None:
    body = "type = 'oneshot'\n[readiness]\ntype = 'none'\n"
    assert check_or_raise(load(tmp_path, {"services/x.toml": service("x", body)})).services["x"]


def test_readiness_options_are_validated_and_kept(tmp_path: Path) -> None:
    body = "[readiness]\ntype = 'tcp-port'\nport = 8080\nhost = '::1'\ntimeout = '5s'\n"
    x = check_or_raise(load(tmp_path, {"services/x.toml": service("x", body)}, EXT)).services["x"]
    assert x.readiness.type == "tcp-port"
    assert x.readiness.timeout == 5.0
    assert x.readiness.options == {"port": 8080, "host": "::1"}


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("type = 'tcp-port'\nport = 70000", "readiness.port", "invalid port 70000"),
        ("type = 'tcp-port'", "readiness.port", "missing required key"),
        ("type = 'tcp-port'\nport = 80\nurl = 'x'", "readiness.url", "unknown key for readiness type 'tcp-port'"),
        ("type = 'none'\nport = 80", "readiness.port", "unknown key for readiness type 'none'"),
        ("timeout = '0s'", "readiness.timeout", "must be greater than zero, got '0s'"),
        ("type = 5", "readiness.type", "expected a string, got integer"),
    ],
)
def test_readiness_errors(tmp_path: Path, body: str, key: str, message: str) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "[readiness]\n" + body)}, EXT))
    assert (err.file, err.key, err.message) == ("services/x.toml", key, message)


def test_crashing_validator_is_an_error_not_a_crash(tmp_path: Path) -> None:
    def boom(table: dict[str, Any]) -> list[tuple[str, str]]:
        raise RuntimeError("oops")

    ext = builtin_extensions()
    ext.readiness["tcp-port"] = (ReadinessType("tcp-port", _no_detector, frozenset({"port"}), boom), "bad")
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "[readiness]\ntype = 'tcp-port'\nport = 1\n")}, ext))
    assert err.key == "readiness"
    assert "validator of plugin 'bad' failed: RuntimeError: oops" in err.message


# -- plugin-owned tables -------------------------------------------------------


def test_plugin_section_needs_plugin(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "[cgroup]\nmemory-max = '1G'\n")}))
    assert (err.file, err.key) == ("services/x.toml", "cgroup")
    assert err.message == (
        "section [cgroup] needs the dynamod-isolation plugin, which is not loaded; "
        "install it from this repository: .venv/bin/uv pip install -e plugins/isolation"
    )


def test_unknown_section(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "[frobnicate]\na = 1\n")}))
    assert (err.key, err.message) == ("frobnicate", "unknown section [frobnicate] (installed plugins: none)")


def test_plugin_section_validated_and_kept(tmp_path: Path) -> None:
    x = check_or_raise(load(tmp_path, {"services/x.toml": service("x", "[cgroup]\nmemory-max = '512M'\n")}, EXT))
    assert x.services["x"].sections == {"cgroup": {"memory-max": "512M"}}


def test_plugin_section_errors_are_dotted(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"services/x.toml": service("x", "[cgroup]\nmemory-max = 'lots'\ncpu = 1\n")}, EXT)
    assert messages(cfg) == [
        "services/x.toml: cgroup.memory-max: invalid size 'lots' (examples: 64K, 512M, 2G, or a number of bytes, 'infinity')",
        "services/x.toml: cgroup.cpu: unknown key",
    ]
    assert cfg.services == {}


def test_top_level_scalar_is_unknown_key(tmp_path: Path) -> None:
    text = 'restart = "always"\n' + service("x")
    err = one_error(load(tmp_path, {"services/x.toml": text}))
    assert (err.key, err.message) == ("restart", "expected a table, got string")
    text = 'policy = "always"\n' + service("y")
    err = one_error(load(tmp_path / "2", {"services/y.toml": text}))
    assert err.key == "policy" and err.message.startswith("unknown key")


# -- supervisors -------------------------------------------------------------


def test_supervisor_errors(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "supervisors/a.toml": "[supervisor]\nname = 'a'\nstrategy = 'all'\nflavour = 1\n[restart]\nmax-restarts = -2\n",
        "supervisors/b.toml": "[supervisor]\nparent = 'root'\n",
        "supervisors/c.toml": "[supervisor]\nname = 'c'\n[cgroup]\nx = 1\n",
    })
    assert messages(cfg) == [
        "supervisors/a.toml: supervisor.strategy: invalid value 'all' (expected one of: one-for-one, one-for-all, rest-for-one)",
        "supervisors/a.toml: supervisor.flavour: unknown key",
        "supervisors/a.toml: restart.max-restarts: must be at least 0, got -2",
        "supervisors/b.toml: supervisor.name: missing required key",
        "supervisors/c.toml: cgroup: unknown table",
    ]
    assert list(cfg.supervisors) == ["root"]


def test_root_supervisor_file_and_parent_rules(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "supervisors/root.toml": "[supervisor]\nname = 'root'\nparent = 'x'\n",
        "supervisors/x.toml": "[supervisor]\nname = 'x'\n",
    })
    err = one_error(cfg)
    assert (err.file, err.key, err.message) == (
        "supervisors/root.toml", "supervisor.parent", "the root supervisor has no parent"
    )


def test_root_supervisor_file_overrides_defaults(tmp_path: Path) -> None:
    cfg = check_or_raise(load(tmp_path, {
        "supervisors/root.toml": "[supervisor]\nname = 'root'\n[restart]\nmax-restarts = 20\n",
    }))
    assert cfg.supervisors["root"].max_restarts == 20
    assert cfg.supervisors["root"].source == "supervisors/root.toml"


def test_unknown_supervisor(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "supervisor = 'apps'\n")}))
    assert (err.file, err.key) == ("services/x.toml", "service.supervisor")
    assert err.message == "unknown supervisor 'apps' (known: root)"


def test_unknown_parent(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"supervisors/a.toml": "[supervisor]\nname = 'a'\nparent = 'b'\n"}))
    assert (err.file, err.key) == ("supervisors/a.toml", "supervisor.parent")
    assert err.message == "unknown parent supervisor 'b' (known: a, root)"


def test_supervisor_cycle(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "supervisors/a.toml": "[supervisor]\nname = 'a'\nparent = 'c'\n",
        "supervisors/b.toml": "[supervisor]\nname = 'b'\nparent = 'a'\n",
        "supervisors/c.toml": "[supervisor]\nname = 'c'\nparent = 'b'\n",
        "supervisors/d.toml": "[supervisor]\nname = 'd'\nparent = 'a'\n",
        "services/x.toml": service("x", "supervisor = 'd'\n"),
    })
    err = one_error(cfg)
    assert (err.file, err.key, err.message) == (
        "supervisors/a.toml", "supervisor.parent", "supervisor cycle: a -> c -> b -> a"
    )
    # Nothing hanging off the cycle is usable: x is left out, root remains.
    assert list(cfg.supervisors) == ["root"]
    assert cfg.services == {}


def test_supervisor_files_in_reverse_order(tmp_path: Path) -> None:
    # Children sort before their parents: resolution must not depend on order.
    cfg = check_or_raise(load(tmp_path, {
        "supervisors/00-leaf.toml": "[supervisor]\nname = 'leaf'\nparent = 'middle'\n",
        "supervisors/50-middle.toml": "[supervisor]\nname = 'middle'\nparent = 'top'\n",
        "supervisors/99-top.toml": "[supervisor]\nname = 'top'\nstrategy = 'one-for-all'\n",
        "services/a.toml": service("a", "supervisor = 'leaf'\n"),
    }))
    assert cfg.supervisors["leaf"].parent == "middle"
    assert cfg.supervisors["middle"].parent == "top"
    assert cfg.supervisors["top"].parent == "root"
    assert cfg.services["a"].supervisor == "leaf"


def test_service_under_broken_supervisor_is_left_out(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "supervisors/apps.toml": "[supervisor]\nname = 'apps'\nstrategy = 'bogus'\n",
        "services/x.toml": service("x", "supervisor = 'apps'\n"),
    })
    err = one_error(cfg)  # only the supervisor's own error
    assert err.file == "supervisors/apps.toml"
    assert cfg.services == {}


# -- duplicates --------------------------------------------------------------


def test_duplicate_service_names(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"services/a.toml": service("web"), "services/b.toml": service("web")})
    err = one_error(cfg)
    assert (err.file, err.key) == ("services/b.toml", "service.name")
    assert err.message == "duplicate service name 'web' (also defined in services/a.toml)"


def test_duplicate_supervisor_names(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "supervisors/a.toml": "[supervisor]\nname = 's'\n",
        "supervisors/b.toml": "[supervisor]\nname = 's'\n",
    })
    err = one_error(cfg)
    assert (err.file, err.key) == ("supervisors/b.toml", "supervisor.name")
    assert err.message == "duplicate supervisor name 's' (also defined in supervisors/a.toml)"


# -- dependencies --------------------------------------------------------------


def test_requires_unknown_is_error_others_warn(tmp_path: Path) -> None:
    body = "[dependencies]\nrequires = ['ghost']\nwants = ['w']\nafter = ['a']\nbefore = ['b']\n"
    cfg = load(tmp_path, {"services/x.toml": service("x", body)})
    assert messages(cfg) == ["services/x.toml: dependencies.requires[0]: requires unknown service 'ghost'"]
    assert messages(cfg, "warning") == [
        "services/x.toml: dependencies.wants[0]: unknown service 'w' (ignored)",
        "services/x.toml: dependencies.after[0]: unknown service 'a' (ignored)",
        "services/x.toml: dependencies.before[0]: unknown service 'b' (ignored)",
    ]


def test_warnings_alone_pass_check(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"services/x.toml": service("x", "[dependencies]\nwants = ['w']\n")})
    assert check_or_raise(cfg) is cfg
    assert "x" in cfg.services
    assert str(cfg.warnings[0]).startswith("warning: services/x.toml: dependencies.wants[0]:")


def test_dependency_list_type_errors(tmp_path: Path) -> None:
    body = "[dependencies]\nrequires = 'db'\nafter = ['a', 2]\n"
    cfg = load(tmp_path, {"services/x.toml": service("x", body)})
    assert messages(cfg) == [
        "services/x.toml: dependencies.requires: expected an array of strings, got string",
        "services/x.toml: dependencies.after[1]: expected a string, got integer",
    ]


def test_broken_service_still_satisfies_references(tmp_path: Path) -> None:
    # db has its own error; x's "requires db" must not add a second one.
    cfg = load(tmp_path, {
        "services/db.toml": service("db", "[restart]\ndelay = 'soon'\n"),
        "services/x.toml": service("x", "[dependencies]\nrequires = ['db']\n"),
    })
    assert messages(cfg) == ["services/db.toml: restart.delay: invalid duration 'soon' (examples: 500ms, 10s, 2m)"]
    assert list(cfg.services) == ["x"]


def test_dependency_cycle_path(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "services/a.toml": service("a", "[dependencies]\nrequires = ['b']\nbefore = ['c']\n"),
        "services/b.toml": service("b", "[dependencies]\nwants = ['c']\n"),
        "services/c.toml": service("c"),
        "services/d.toml": service("d", "[dependencies]\nafter = ['a']\n"),
    })
    err = one_error(cfg)
    assert (err.file, err.key, err.message) == (
        "services/a.toml", "dependencies.requires", "dependency cycle: a -> b -> c -> a"
    )


def test_dependency_cycles_each_reported_once(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "services/x.toml": service("x", "[dependencies]\nafter = ['y']\n"),
        "services/y.toml": service("y", "[dependencies]\nafter = ['x']\n"),
        "services/p.toml": service("p", "[dependencies]\nrequires = ['p']\n"),
        "services/m.toml": service("m", "[dependencies]\nafter = ['n']\n"),
        "services/n.toml": service("n", "[dependencies]\nbefore = ['m']\n"),
    })
    assert messages(cfg) == [
        "services/p.toml: dependencies.requires: dependency cycle: p -> p",
        "services/x.toml: dependencies.after: dependency cycle: x -> y -> x",
    ]


def test_cycle_through_before_names_the_before_key(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "services/a.toml": service("a", "[dependencies]\nbefore = ['b']\n"),
        "services/b.toml": service("b", "[dependencies]\nbefore = ['a']\n"),
    })
    err = one_error(cfg)
    assert (err.file, err.key, err.message) == (
        "services/b.toml", "dependencies.before", "dependency cycle: a -> b -> a"
    )


# -- plugin contributions ----------------------------------------------------


def _with_definitions(*defs: tuple[str, str, str]) -> Extensions:
    ext = builtin_extensions()
    ext.plugins = sorted({plugin for plugin, _, _ in defs})
    for plugin, name, text in defs:
        ext.definitions.append((ServiceDefinition(name, dedent(text), plugin), plugin))
    return ext


def test_plugin_definition_is_loaded(tmp_path: Path) -> None:
    ext = _with_definitions(("dynamod-logind", "dynamod-logind", service("dynamod-logind")))
    cfg = check_or_raise(load_config(tmp_path, ext))
    assert cfg.services["dynamod-logind"].source == "<plugin dynamod-logind>:dynamod-logind"


def test_file_overrides_plugin_definition(tmp_path: Path) -> None:
    # The plugin's definition is broken: the override must hide that too.
    ext = _with_definitions(
        ("logind", "dynamod-logind", service("dynamod-logind", "[restart]\ndelay = 'bad'\n")),
        ("hostnamed", "dynamod-hostnamed", service("dynamod-hostnamed")),
    )
    cfg = load(tmp_path, {
        "services/my-logind.toml": service("dynamod-logind", exec_='["/usr/local/bin/logind"]'),
        "services/dynamod-hostnamed.toml": service("hostnamed-replacement"),
    }, ext)
    assert cfg.diagnostics == []
    assert cfg.services["dynamod-logind"].exec == ("/usr/local/bin/logind",)
    assert cfg.services["dynamod-logind"].source == "services/my-logind.toml"
    # Overriding by file name (services/NAME.toml) works as well.
    assert "dynamod-hostnamed" not in cfg.services


def test_two_plugins_same_service(tmp_path: Path) -> None:
    ext = _with_definitions(("p1", "svc", service("svc")), ("p2", "svc", service("svc")))
    cfg = load_config(tmp_path, ext)
    err = one_error(cfg)
    assert (err.file, err.key) == ("<plugin p2>:svc", "service.name")
    assert "also defined by <plugin p1>:svc" in err.message


def test_plugin_definition_errors_name_the_plugin(tmp_path: Path) -> None:
    ext = _with_definitions(("p1", "a", "[service\n"), ("p2", "b", service("b", "[restart]\ndelay = 'x'\n")))
    cfg = load_config(tmp_path, ext)
    assert [(d.file, d.key) for d in cfg.errors] == [("<plugin p1>:a", ""), ("<plugin p2>:b", "restart.delay")]


def test_plugin_problems_become_errors(tmp_path: Path) -> None:
    ext = builtin_extensions()
    ext.problems.append("readiness type 'notify' is provided by both 'a' and 'b'")
    err = one_error(load_config(tmp_path, ext))
    assert err.file == "<plugins>"
    assert "provided by both" in err.message


def test_plugin_definition_name_mismatch_warns(tmp_path: Path) -> None:
    ext = _with_definitions(("p1", "logind", service("dynamod-logind")))
    cfg = load_config(tmp_path, ext)
    assert cfg.errors == []
    assert messages(cfg, "warning") == [
        "<plugin p1>:logind: service.name: definition 'logind' declares service name 'dynamod-logind'"
    ]
    assert "dynamod-logind" in cfg.services


def test_empty_supervisor_name_is_unknown(tmp_path: Path) -> None:
    err = one_error(load(tmp_path, {"services/x.toml": service("x", "supervisor = ''\n")}))
    assert (err.key, err.message) == ("service.supervisor", "unknown supervisor '' (known: root)")


def test_config_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cfg = load_config(tmp_path / "file")
    assert [d.message for d in cfg.warnings] == [
        "configuration directory is a file, not a directory "
        "(give the directory that holds services/ and supervisors/)"
    ]
