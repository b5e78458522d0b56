"""What installed plugins add to the configuration language.

The loader consults an :class:`Extensions` to know which readiness types and
which plugin-owned tables exist. ``KNOWN_PROVIDERS`` only serves error
messages: when a config uses a well-known name whose plugin is not installed,
the message says which distribution to install, and from where.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dynamod.api import ConfigSection, ReadinessType, ServiceDefinition

if TYPE_CHECKING:
    from dynamod.plugins import PluginHost

KNOWN_PROVIDERS = {
    ("readiness", "notify"): "dynamod-readiness",
    ("readiness", "tcp-port"): "dynamod-readiness",
    ("readiness", "exec"): "dynamod-readiness",
    ("readiness", "fd"): "dynamod-readiness",
    ("section", "cgroup"): "dynamod-isolation",
    ("section", "namespace"): "dynamod-isolation",
}
# Where each distribution lives in this repository: no package index has
# them, so the hint says how to install from a checkout (``./scripts/setup``
# installs them all).
PLUGIN_DIRS = {
    "dynamod-readiness": "plugins/readiness",
    "dynamod-isolation": "plugins/isolation",
}

@dataclass
class Extensions:
    readiness: dict[str, tuple[ReadinessType, str]] = field(default_factory=dict)
    sections: dict[str, tuple[ConfigSection, str]] = field(default_factory=dict)
    definitions: list[tuple[ServiceDefinition, str]] = field(default_factory=list)
    # Conflicts between plugins (two providers of one type name...).
    problems: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)

    def missing_hint(self, kind: str, name: str) -> str:
        """The end of an error message for an unavailable readiness type
        (``kind='readiness'``) or table (``kind='section'``)."""
        dist = KNOWN_PROVIDERS.get((kind, name))
        what = f"readiness type {name!r}" if kind == "readiness" else f"section [{name}]"
        if dist:
            return (f"{what} needs the {dist} plugin, which is not loaded; install it from "
                    f"this repository: .venv/bin/uv pip install -e {PLUGIN_DIRS[dist]}")
        installed = ", ".join(self.plugins) or "none"
        if kind == "readiness":
            known = ", ".join(sorted(self.readiness))
            return f"unknown {what} (known types: {known}; installed plugins: {installed})"
        return f"unknown {what} (installed plugins: {installed})"


def builtin_extensions() -> Extensions:
    """What the host's built-in plugins alone provide (no entry points)."""
    from dynamod.plugins import make_plugin_host

    return collect_extensions(make_plugin_host(load_entrypoints=False))


def collect_extensions(host: PluginHost | None) -> Extensions:
    """Ask every plugin, the built-in ones included, what it adds; conflicts
    become ``problems``."""
    if host is None:
        return builtin_extensions()
    ext = Extensions()
    ext.plugins = sorted(host.info)

    def bad(plugin: str, exc: Exception) -> None:
        ext.problems.append(f"plugin {plugin!r} raised {type(exc).__name__}: {exc}")

    for plugin, types in host.call_each("dynamod_readiness_types", on_error=bad):
        for rt in types:
            if rt.name in ext.readiness:
                other = ext.readiness[rt.name][1]
                ext.problems.append(
                    f"readiness type {rt.name!r} is provided by both {other!r} and {plugin!r}"
                )
                continue
            ext.readiness[rt.name] = (rt, plugin)
    for plugin, sections in host.call_each("dynamod_config_sections", on_error=bad):
        for sec in sections:
            if sec.name in ext.sections:
                other = ext.sections[sec.name][1]
                ext.problems.append(f"section [{sec.name}] is claimed by both {other!r} and {plugin!r}")
                continue
            ext.sections[sec.name] = (sec, plugin)
    # DYNAMOD_PLUGIN_SERVICES=0: plugins add types and tables but no services
    # (test containers that run whatever plugins the environment has).
    if os.environ.get("DYNAMOD_PLUGIN_SERVICES", "1") != "0":
        for plugin, defs in host.call_each("dynamod_service_definitions", on_error=bad):
            ext.definitions.extend((d, plugin) for d in defs)
    return ext
