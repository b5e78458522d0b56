"""The plugin host: discovery through installed metadata, refusal of unknown
hooks, reporting of broken plugins, and the hookspec documentation."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dynamod
from dynamod import hookspecs
from dynamod.plugins import make_plugin_host
from dynamod.testing import install_plugin


def fake_distribution(root: Path, dist: str, module: str, source: str, group: str = "dynamod") -> None:
    install_plugin(root, dist, module, source, group=group)


def _installed_plugins() -> str:
    """Every plugin of this environment (readiness, isolation, the mimic
    services...): the tests see only the fake distributions they install."""
    from importlib.metadata import entry_points

    return ",".join(sorted({ep.name for g in ("dynamod", "dynamodctl") for ep in entry_points(group=g)}))


def run_host(root: Path, code: str, env: dict[str, str] | None = None) -> str:
    import os

    full = dict(os.environ, PYTHONPATH=str(root), DYNAMOD_DISABLE_PLUGINS=_installed_plugins())
    full.update(env or {})
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full)
    assert r.returncode == 0, r.stderr
    return r.stdout


HOST_REPORT = """
    from dynamod.plugins import make_plugin_host
    host = make_plugin_host()
    for name, info in sorted(host.info.items()):
        print("loaded", name, info.distribution, info.version, ",".join(info.hooks))
    for p in host.problems:
        print("problem", p)
"""


def test_entry_point_is_found_only_when_installed(tmp_path: Path) -> None:
    good = """
        import dynamod

        @dynamod.hookimpl
        def dynamod_service_state_changed(service, old, new, reason):
            pass
    """
    assert "loaded" not in run_host(tmp_path, HOST_REPORT)
    fake_distribution(tmp_path, "dynamod-observer", "observer_plugin", good)
    out = run_host(tmp_path, HOST_REPORT)
    assert "loaded dynamod-observer dynamod-observer 1.0 dynamod_service_state_changed" in out


def test_unknown_hook_and_broken_import_are_reported_not_fatal(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "dynamod-typo", "typo_plugin", """
        import dynamod

        @dynamod.hookimpl
        def dynamod_servce_started(service, pid):
            pass
    """)
    fake_distribution(tmp_path, "dynamod-broken", "broken_plugin", "raise ImportError('no libfoo here')\n")
    fake_distribution(tmp_path, "dynamod-fine", "fine_plugin", """
        import dynamod

        @dynamod.hookimpl
        def dynamod_service_stopped(service):
            pass
    """)
    # a hand-edited entry_points.txt with a line that is not "name = value"
    fake_distribution(tmp_path, "dynamod-mangled", "mangled_plugin", "")
    info = tmp_path / "dynamod_mangled-1.0.dist-info" / "entry_points.txt"
    info.write_text("[dynamod]\nmangled_plugin\n")
    out = run_host(tmp_path, HOST_REPORT)
    assert "problem plugin 'dynamod-typo': implements unknown hook(s): dynamod_servce_started" in out
    assert ("problem plugin 'mangled_plugin': failed to load: ValueError: malformed entry point "
            "'mangled_plugin' of dynamod-mangled: expected 'name = module[:attribute]'") in out
    assert "problem plugin 'dynamod-broken': failed to load broken_plugin: ImportError: no libfoo here" in out
    assert "loaded dynamod-fine" in out
    assert "loaded dynamod-typo" not in out


def test_disable_and_autoload_knobs(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "dynamod-fine", "fine_plugin", """
        import dynamod

        @dynamod.hookimpl
        def dynamod_service_stopped(service):
            pass
    """)
    assert "loaded dynamod-fine" in run_host(tmp_path, HOST_REPORT)
    out = run_host(tmp_path, HOST_REPORT, {"DYNAMOD_DISABLE_PLUGINS": "dynamod-fine"})
    assert "dynamod-fine" not in out
    assert "dynamod-fine" not in run_host(tmp_path, HOST_REPORT, {"DYNAMOD_PLUGINS_AUTOLOAD": "0"})


def test_wrong_arguments_are_refused_in_process() -> None:
    class Bad:
        @dynamod.hookimpl
        def dynamod_service_started(self, service, pid, colour):  # 'colour' is not in the spec
            pass

    host = make_plugin_host(load_entrypoints=False, plugins=[("bad", Bad())])
    assert "bad" not in host.info
    assert "colour" in str(host.problems[0])


def test_call_each_isolates_a_failing_plugin() -> None:
    class Boom:
        @dynamod.hookimpl
        def dynamod_config_sections(self):
            raise RuntimeError("boom")

    class Fine:
        @dynamod.hookimpl
        def dynamod_config_sections(self):
            return ["fine's"]

    host = make_plugin_host(load_entrypoints=False, plugins=[("boom", Boom()), ("fine", Fine())])
    errors: list[str] = []
    results = host.call_each("dynamod_config_sections", on_error=lambda p, e: errors.append(p))
    assert results == [("fine", ["fine's"])]
    assert errors == ["boom"]


def test_call_each_goes_through_pluggy_wrappers_and_tracing(monkeypatch, capsys) -> None:
    monkeypatch.setenv("DYNAMOD_TRACE_PLUGINS", "1")
    seen: list[str] = []

    class Wrapper:
        @dynamod.hookimpl(wrapper=True)
        def dynamod_config_sections(self):
            result = yield
            seen.append(f"wrapped {result}")
            return result

    class One:
        @dynamod.hookimpl
        def dynamod_config_sections(self):
            return ["one"]

    class Two:
        @dynamod.hookimpl
        def dynamod_config_sections(self):
            return ["two"]

    host = make_plugin_host(
        load_entrypoints=False, plugins=[("w", Wrapper()), ("one", One()), ("two", Two())]
    )
    assert host.call_each("dynamod_config_sections") == [("one", ["one"]), ("two", ["two"])]
    # The wrapper saw each plugin's answer on its own.
    assert seen == ["wrapped [['one']]", "wrapped [['two']]"]
    trace = capsys.readouterr().err
    assert "finish dynamod_config_sections --> [['one']]" in trace
    assert "finish dynamod_config_sections --> [['two']]" in trace


def test_the_builtin_readiness_none_is_a_plugin_and_cannot_be_replaced() -> None:
    from dynamod.api import ReadinessType
    from dynamod.config.extensions import collect_extensions

    class Impostor:
        @dynamod.hookimpl
        def dynamod_readiness_types(self):
            return [ReadinessType(name="none", create=lambda service: None)]

    bare = make_plugin_host(load_entrypoints=False)
    # Registered through the hook like any plugin, but not listed as installed.
    assert [i.plugin_name for i in bare.hook.dynamod_readiness_types.get_hookimpls()] == ["dynamod"]
    assert bare.info == {}
    ext = collect_extensions(make_plugin_host(load_entrypoints=False, plugins=[("imp", Impostor())]))
    assert ext.readiness["none"][1] == "dynamod"
    assert ext.problems == ["readiness type 'none' is provided by both 'dynamod' and 'imp'"]
    assert ext.plugins == ["imp"]


@pytest.mark.parametrize(
    "name",
    [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith(("dynamod_", "dynamodctl_"))],
)
def test_every_hookspec_is_documented_for_plugin_authors(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert len(doc) > 120, f"{name} needs a docstring written for plugin authors"
    assert name in Path(__file__).resolve().parents[1].joinpath("docs/plugins.md").read_text(), (
        f"{name} is missing from docs/plugins.md"
    )


def test_isolated_hooks_go_through_pluggy_and_survive_a_broken_plugin() -> None:
    """An exception in one implementation is reported with the plugin's name
    and the others still run; firstresult is honoured."""
    import dynamod
    from dynamod.plugins import make_plugin_host

    seen: list[str] = []
    errors: list[tuple[str, str, str]] = []

    class Broken:
        @dynamod.hookimpl
        def dynamod_service_state_changed(self, service, old, new, reason):
            raise RuntimeError("boom")

        @dynamod.hookimpl
        def dynamod_service_by_pid(self, pid):
            raise RuntimeError("no idea")

    class Fine:
        @dynamod.hookimpl
        def dynamod_service_state_changed(self, service, old, new, reason):
            seen.append(new)

        @dynamod.hookimpl
        def dynamod_service_by_pid(self, pid):
            return "web" if pid == 42 else None

    host = make_plugin_host(load_entrypoints=False)
    host.on_hook_error = lambda plugin, hook, exc: errors.append((plugin, hook, str(exc)))
    assert host.register(Fine(), "fine") and host.register(Broken(), "broken")
    host.hook.dynamod_service_state_changed(service=None, old="a", new="b", reason="")
    assert seen == ["b"]
    assert host.hook.dynamod_service_by_pid(pid=42) == "web"
    assert ("broken", "dynamod_service_state_changed", "boom") in errors
    assert ("broken", "dynamod_service_by_pid", "no idea") in errors
