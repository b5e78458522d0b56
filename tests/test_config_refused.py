"""Services whose file was refused are kept in ``SystemConfig.refused``
(issue 11, point 3): never silently dropped, and a dependency on one is not
"unknown"; plus the oneshot's default restart policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamod.api import ServiceDefinition
from dynamod.config.extensions import builtin_extensions
from dynamod.config.loader import check_or_raise, load_config
from dynamod.config.model import (
    ConfigError,
    DependencyConfig,
    RefusedService,
    RestartConfig,
    ServiceConfig,
    SystemConfig,
    default_restart_policy,
)


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def svc(name: str, body: str = "") -> str:
    return f'[service]\nname = "{name}"\nexec = ["/bin/true"]\n{body}'


def load(tmp_path: Path, files: dict[str, str]) -> SystemConfig:
    return load_config(tree(tmp_path, files))


def test_requires_a_refused_service(tmp_path: Path) -> None:
    """The reproduction of issue 11 point 3: dep.toml has an unknown key."""
    cfg = load(tmp_path, {
        "services/top.toml": svc("top", '[dependencies]\nrequires = ["dep"]\nwants = ["dep"]\n'),
        "services/dep.toml": svc("dep", 'bogus = 1\n[dependencies]\nrequires = ["base"]\nafter = ["x"]\n'),
        "services/base.toml": svc("base"),
    })
    assert sorted(cfg.services) == ["base", "top"]
    assert cfg.services["top"].dependencies.requires == ("dep",)  # kept, for the engine to block
    assert cfg.refused == {"dep": RefusedService(
        name="dep", source="services/dep.toml",
        errors=("services/dep.toml: service.bogus: unknown key",),
        dependencies=DependencyConfig(requires=("base",), after=("x",)), supervisor="root",
    )}
    # Nothing calls dep unknown: its one mistake is one message (plus the
    # warning for its own unknown "after").
    assert [str(d) for d in cfg.diagnostics] == [
        "error: services/dep.toml: service.bogus: unknown key",
        "warning: services/dep.toml: dependencies.after[0]: unknown service 'x' (ignored)",
    ]
    with pytest.raises(ConfigError):
        check_or_raise(cfg)


def test_unparsable_file_is_refused_by_its_stem(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "services/top.toml": svc("top", '[dependencies]\nrequires = ["dep"]\n'),
        "services/dep.toml": '[service\nname = "dep"\n',
    })
    (err,) = cfg.errors
    assert err.file == "services/dep.toml" and err.message.startswith("invalid TOML: ")
    assert list(cfg.services) == ["top"]
    assert cfg.refused["dep"] == RefusedService(
        "dep", "services/dep.toml", (f"services/dep.toml: {err.message}",), DependencyConfig(), None
    )


def test_missing_or_invalid_name_is_refused_by_its_stem(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "services/a.toml": '[service]\nexec = ["/bin/true"]\n[dependencies]\nrequires = ["b"]\n',
        "services/b.toml": '[service]\nname = "../b"\nexec = ["/bin/true"]\nsupervisor = "root"\n',
        "services/c d.toml": '[service]\nexec = ["/bin/true"]\n',  # no usable name at all
    })
    assert sorted(cfg.refused) == ["a", "b"]
    assert cfg.refused["a"].errors == ("services/a.toml: service.name: missing required key",)
    # What could be parsed of a nameless file is kept.
    assert cfg.refused["a"].dependencies.requires == ("b",)
    assert cfg.refused["b"].supervisor == "root"
    assert cfg.refused["b"].errors[0].startswith("services/b.toml: service.name: invalid name '../b'")
    # "c d" is not a name; its error is still reported.
    assert "services/c d.toml" in {d.file for d in cfg.errors}
    assert not any("unknown service" in d.message for d in cfg.diagnostics)


def test_stem_does_not_shadow_a_declared_name(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "services/web.toml": "garbage [",
        "services/frontend.toml": svc("web"),
    })
    assert list(cfg.services) == ["web"] and cfg.refused == {}
    assert [d.file for d in cfg.errors] == ["services/web.toml"]


def test_service_under_a_refused_supervisor(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "supervisors/apps.toml": '[supervisor]\nname = "apps"\nstrategy = "sometimes"\n',
        "supervisors/web.toml": '[supervisor]\nname = "web"\nparent = "apps"\n',
        "supervisors/gone.toml": "[supervisor\n",
        "services/a.toml": svc("a", 'supervisor = "apps"\n'),
        "services/b.toml": svc("b", 'supervisor = "web"\n'),
        "services/c.toml": svc("c", 'supervisor = "gone"\n'),
        "services/d.toml": svc("d", 'supervisor = "nope"\n'),
    })
    assert cfg.services == {}
    assert cfg.refused["a"].errors == (
        "services/a.toml: service.supervisor: not started: supervisor 'apps' was refused "
        "(see supervisors/apps.toml)",
    )
    assert cfg.refused["b"].errors == (
        "services/b.toml: service.supervisor: not started: supervisor 'web' cannot run: "
        "supervisor 'apps' was refused (see supervisors/apps.toml)",
    )
    # An unparsable supervisor file declares its stem: "gone" is refused,
    # not unknown.
    assert cfg.refused["c"].errors == (
        "services/c.toml: service.supervisor: not started: supervisor 'gone' was refused "
        "(see supervisors/gone.toml)",
    )
    assert cfg.refused["d"].errors == (
        "services/d.toml: service.supervisor: unknown supervisor 'nope' "
        "(known: apps, gone, root, web)",
    )
    assert {r.supervisor for r in cfg.refused.values()} == {"apps", "web", "gone", "nope"}
    # The supervisor reasons are not extra diagnostics: one mistake, one message.
    assert sorted(d.file for d in cfg.errors) == [
        "services/d.toml", "supervisors/apps.toml", "supervisors/gone.toml"]


def test_supervisor_cycle_refuses_its_services(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "supervisors/x.toml": '[supervisor]\nname = "x"\nparent = "y"\n',
        "supervisors/y.toml": '[supervisor]\nname = "y"\nparent = "x"\n',
        "services/a.toml": svc("a", 'supervisor = "x"\n'),
    })
    assert cfg.refused["a"].errors == (
        "services/a.toml: service.supervisor: not started: supervisor 'x' is on a cycle of parents",
    )


def test_duplicate_names(tmp_path: Path) -> None:
    # The first is fine: the second is an error, the service runs.
    cfg = load(tmp_path, {"services/a.toml": svc("web"), "services/b.toml": svc("web")})
    assert list(cfg.services) == ["web"] and cfg.refused == {}
    # The first is refused: the second's error joins its reasons.
    cfg = load(tmp_path, {"services/a.toml": svc("web", "bogus = 1\n"), "services/b.toml": svc("web")})
    assert cfg.services == {}
    assert cfg.refused["web"].errors == (
        "services/a.toml: service.bogus: unknown key",
        "services/b.toml: service.name: duplicate service name 'web' (also defined in services/a.toml)",
    )


def test_every_file_is_loaded_or_refused(tmp_path: Path) -> None:
    files = {
        "services/ok.toml": svc("ok"),
        "services/bad-type.toml": svc("bad-type", 'type = "daemon"\n'),
        "services/bad-toml.toml": "= 1",
        "services/no-service.toml": "[restart]\npolicy = 'temporary'\n",
        "services/cycle-a.toml": svc("cycle-a", '[dependencies]\nrequires = ["cycle-b"]\n'),
        "services/cycle-b.toml": svc("cycle-b", '[dependencies]\nrequires = ["cycle-a"]\n'),
    }
    cfg = load(tmp_path, files)
    stems = {Path(rel).stem for rel in files}
    assert set(cfg.services) | set(cfg.refused) == stems
    assert not set(cfg.services) & set(cfg.refused)
    # A cycle is reported, but its services are the engine's to treat.
    assert {"ok", "cycle-a", "cycle-b"} == set(cfg.services)
    for refused in cfg.refused.values():
        assert refused.errors and all(e.startswith(refused.source + ": ") for e in refused.errors)


def test_plugin_definitions(tmp_path: Path) -> None:
    ext = builtin_extensions()
    ext.definitions = [
        (ServiceDefinition("broken", "[service\n", "plug"), "plug"),
        (ServiceDefinition("custom", svc("custom"), "plug"), "plug"),
    ]
    tree(tmp_path, {"services/custom.toml": "not toml ["})
    cfg = load_config(tmp_path, ext)
    assert cfg.services == {}
    assert cfg.refused["broken"].source == "<plugin plug>:broken"
    # A broken override refuses the service: the administrator's intent is
    # not silently replaced by the plugin's definition.
    assert cfg.refused["custom"].source == "services/custom.toml"


def test_broken_root_supervisor_runs_with_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, {
        "supervisors/root.toml": '[supervisor]\nname = "root"\nstrategy = "nope"\n',
        "services/a.toml": svc("a"),
    })
    assert list(cfg.services) == ["a"]
    assert cfg.supervisors["root"].max_restarts == 5
    assert [str(d) for d in cfg.diagnostics] == [
        "error: supervisors/root.toml: supervisor.strategy: invalid value 'nope' "
        "(expected one of: one-for-one, one-for-all, rest-for-one)",
        "warning: supervisors/root.toml: supervisor: the root supervisor's file has errors: "
        "root runs with the defaults",
    ]


# -- oneshot default restart policy -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "policy"),
    [
        ('type = "oneshot"\n', "temporary"),
        ('type = "oneshot"\n[restart]\ndelay = "2s"\n', "temporary"),
        ('type = "oneshot"\n[restart]\npolicy = "permanent"\n', "permanent"),
        ('type = "oneshot"\n[restart]\npolicy = "transient"\n', "transient"),
        ("", "permanent"),
        ('type = "notify"\n[readiness]\ntype = "none"\n', None),  # an error: not loaded
        ('type = "forking"\n[restart]\ndelay = "2s"\n', "permanent"),
        ('[restart]\npolicy = "temporary"\n', "temporary"),
    ],
)
def test_oneshot_is_not_restarted_by_default(tmp_path: Path, body: str, policy: str | None) -> None:
    cfg = load(tmp_path, {"services/s.toml": svc("s", body)})
    if policy is None:
        assert "s" in cfg.refused
    else:
        assert cfg.services["s"].restart.policy == cfg.services["s"].restart_policy == policy


def test_default_policy_in_the_model() -> None:
    assert RestartConfig().policy is None  # "not given"
    one = ServiceConfig("x", ("/bin/true",), type="oneshot")
    assert one.restart.policy == "temporary"
    assert one == ServiceConfig("x", ("/bin/true",), type="oneshot", restart=RestartConfig("temporary"))
    assert ServiceConfig("x", ("/bin/true",), type="oneshot",
                         restart=RestartConfig("permanent")).restart.policy == "permanent"
    assert ServiceConfig("x", ("/bin/true",)).restart.policy == "permanent"
    assert [default_restart_policy(t) for t in ("simple", "oneshot", "forking", "notify")] == [
        "permanent", "temporary", "permanent", "permanent"]
