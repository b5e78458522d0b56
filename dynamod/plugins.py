"""Loading plugins: one plugin manager per hook project.

Entry points are loaded one by one so that a plugin that fails to import, or
implements a hook that does not exist, is reported and skipped instead of
taking the process down. Knobs (read from the environment):

* ``DYNAMOD_PLUGINS_AUTOLOAD=0``: load no entry points at all.
* ``DYNAMOD_DISABLE_PLUGINS=a,b``: skip these entry-point names.
* ``DYNAMOD_TRACE_PLUGINS=1``: log every hook call to stderr.

Entry points come from :mod:`dynamod.entrypoints`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from dynamod import hookspecs
from dynamod.entrypoints import find_entry_points

PROJECTS = ("dynamod", "dynamodctl")
# The host's own plugins, registered by every host of their project before
# any entry point (and with --no-plugins): (project, name, module).
BUILTIN_PLUGINS = (("dynamod", "dynamod", "dynamod.svmgr.readiness_none"),)

# Hooks whose implementations are isolated from each other: an exception is
# reported with the plugin's name and counts as "no answer" (None), and the
# other implementations still run. The calls go through pluggy all the same
# (firstresult, hook wrappers, DYNAMOD_TRACE_PLUGINS). Not isolated:
# dynamod_spawn_prepare (raising fails the start, by contract), the boot hook
# and the contribution hooks (collected by call_each with their own report).
ISOLATED_HOOKS = frozenset({
    "dynamod_service_started", "dynamod_service_state_changed", "dynamod_service_status",
    "dynamod_service_by_pid", "dynamod_service_kill", "dynamod_service_exit_reason",
    "dynamod_service_stopped",
})


@dataclass
class PluginInfo:
    name: str
    distribution: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)


@dataclass
class PluginProblem:
    name: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.name!r}: {self.message}"


class PluginHost:
    """A pluggy manager plus what dynamod needs around it: load errors kept
    for reporting, distribution info per plugin, and safe broadcast calls."""

    def __init__(self, project: str = "dynamod") -> None:
        if project not in PROJECTS:
            raise ValueError(f"unknown hook project {project!r}")
        self.project = project
        self.pm = pluggy.PluginManager(project)
        self.pm.add_hookspecs(hookspecs)
        self.problems: list[PluginProblem] = []
        self.info: dict[str, PluginInfo] = {}
        # Where an isolated hook's exception is reported (svmgr sets its log).
        self.on_hook_error: Any = lambda plugin, hook, exc: print(
            f"plugin {plugin!r} failed in {hook}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("DYNAMOD_TRACE_PLUGINS") == "1":
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()
        for proj, name, module in BUILTIN_PLUGINS:
            if proj == project:
                import importlib

                self.pm.register(importlib.import_module(module), name=name)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def register(self, plugin: object, name: str, distribution: str = "", version: str = "") -> bool:
        """Register ``plugin``; refuse it (and record why) when it implements
        hooks this project does not define or with wrong arguments."""
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self.problems.append(PluginProblem(name, str(exc)))
            return False
        unknown = [
            caller.name
            for caller in self.pm.get_hookcallers(plugin) or []
            if not caller.has_spec()
        ]
        if unknown:
            self.pm.unregister(plugin)
            self.problems.append(
                PluginProblem(name, "implements unknown hook(s): " + ", ".join(sorted(unknown)))
            )
            return False
        callers = self.pm.get_hookcallers(plugin) or []
        for caller in callers:
            if caller.name in ISOLATED_HOOKS:
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin and not (impl.hookwrapper or impl.wrapper):
                        impl.function = self._guard(impl.function, name, caller.name)
        hooks = sorted(c.name for c in callers)
        self.info[name] = PluginInfo(name, distribution, version, hooks)
        return True

    def _guard(self, fn: Any, plugin: str, hook: str) -> Any:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # a broken plugin must not stop the others
                try:
                    self.on_hook_error(plugin, hook, exc)
                except Exception:
                    pass
                return None

        guarded.__wrapped__ = fn  # type: ignore[attr-defined]
        return guarded

    def load_entrypoints(self) -> None:
        if os.environ.get("DYNAMOD_PLUGINS_AUTOLOAD", "1") == "0":
            return
        disabled = {n.strip() for n in os.environ.get("DYNAMOD_DISABLE_PLUGINS", "").split(",") if n.strip()}
        seen: set[str] = set()
        for ep in find_entry_points(self.project):
            # Duplicate metadata (stray egg-info, lib64 symlinks) yields the
            # same entry point twice; the first one wins.
            if ep.name in seen or ep.name in disabled:
                continue
            seen.add(ep.name)
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not stop the host
                what = f"failed to load {ep.value}" if ep.value else "failed to load"
                self.problems.append(PluginProblem(ep.name, f"{what}: {type(exc).__name__}: {exc}"))
                continue
            self.register(plugin, ep.name, distribution=ep.distribution, version=ep.version)

    def plugin_name(self, plugin: object) -> str:
        return self.pm.get_name(plugin) or repr(plugin)

    def call_each(self, hook_name: str, on_error: Any = None, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a contribution hook and say whose
        each answer is, isolating each one's exceptions (a plain pluggy call
        stops at the first and mixes the answers). Each implementation is
        called through pluggy on its own, with every hook wrapper around it,
        so wrappers and ``DYNAMOD_TRACE_PLUGINS`` see it as any other call.
        Returns ``(plugin name, result)`` pairs for results that are not
        None; exceptions go to ``on_error(plugin_name, exc)``."""
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()
        plain = [i for i in impls if not (i.hookwrapper or i.wrapper)]
        results: list[tuple[str, Any]] = []
        # In registration order, the built-ins first: when two plugins offer
        # the same name, the earlier one keeps it.
        for impl in plain:
            others = [i.plugin for i in plain if i.plugin is not impl.plugin]
            try:
                answers = self.pm.subset_hook_caller(hook_name, others)(**kwargs)
            except Exception as exc:
                if on_error is not None:
                    on_error(impl.plugin_name, exc)
                continue
            results.extend((impl.plugin_name, a) for a in answers if a is not None)
        return results


def make_plugin_host(
    project: str = "dynamod",
    load_entrypoints: bool = True,
    plugins: Iterable[tuple[str, object]] = (),
) -> PluginHost:
    """Build a plugin host. Tests pass ``load_entrypoints=False`` and an
    explicit ``plugins`` list of ``(name, plugin)`` pairs."""
    host = PluginHost(project)
    for name, plugin in plugins:
        host.register(plugin, name)
    if load_entrypoints:
        host.load_entrypoints()
    return host
