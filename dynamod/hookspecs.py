"""Every hook a dynamod plugin can implement.

Two hook projects live here, each with its own plugin manager and entry-point
group, so that the command-line tool never imports daemon-side plugins:

* ``dynamod`` (group ``dynamod``): hooks called by the service manager and by
  PID 1. Implement them with ``@dynamod.hookimpl``.
* ``dynamodctl`` (group ``dynamodctl``): hooks called by ``dynamodctl``.
  Implement them with ``@dynamod.ctl_hookimpl``.

A plugin is a module (or object) with functions named after the hooks; it is
registered under its entry-point name, which should be its distribution name::

    [project.entry-points.dynamod]
    dynamod-readiness = "dynamod_readiness.plugin"

Rules every hook shares:

* Hooks are synchronous and must not block: they run on the service manager's
  event loop. Slow work belongs in the ``async`` methods of the objects they
  return (a readiness detector's ``wait``).
* An implementation may accept fewer arguments than the specification lists;
  new arguments may be added to a hook without breaking existing plugins.
* An exception raised by an implementation is caught, logged with the plugin's
  name and treated as described per hook; it never takes the manager down.
* Implementations of hooks not listed here are refused when the plugin is
  loaded (a typo in a hook name is an error, not a silent no-op).

The sections below follow the life of a service: what plugins contribute to
the configuration, what happens around spawn, observation, stop, and boot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from dynamod.api import (
        ConfigSection,
        ReadinessType,
        ServiceContext,
        ServiceDefinition,
        SpawnSpec,
    )

hookspec = pluggy.HookspecMarker("dynamod")
ctl_hookspec = pluggy.HookspecMarker("dynamodctl")

# ---------------------------------------------------------------------------
# Contributions to the configuration
# ---------------------------------------------------------------------------


@hookspec
def dynamod_readiness_types() -> list[ReadinessType]:
    """Return the readiness detector types this plugin provides.

    A service selects one with ``[readiness] type = "NAME"``. Each
    :class:`dynamod.api.ReadinessType` names the extra keys it accepts in the
    ``[readiness]`` table and validates their values when the configuration
    is loaded (so ``dynamodctl check`` catches a bad ``port``), and builds one
    :class:`dynamod.api.Detector` per start of the service.

    Two plugins providing the same type name is a configuration error naming
    both plugins. The type ``none`` (ready as soon as the process runs) comes
    from the host's built-in plugin, registered as ``dynamod`` before any
    entry point, and cannot be replaced: another plugin's ``none`` is
    reported as a conflict and ignored.

    :return: a list of :class:`dynamod.api.ReadinessType` (may be empty).

    Example::

        @dynamod.hookimpl
        def dynamod_readiness_types():
            return [ReadinessType(name="http", create=HttpDetector,
                                  options=frozenset({"url", "status"}),
                                  validate=check_http_options)]
    """


@hookspec
def dynamod_config_sections() -> list[ConfigSection]:
    """Return the top-level tables of service files this plugin owns.

    The isolation plugin owns ``[cgroup]`` and ``[namespace]``, for example.
    The host refuses a service file with a table nobody owns and, for a table
    whose well-known owner is not installed, names the distribution to
    install. The validator receives the table as written and returns
    ``(key, message)`` pairs; the validated table reaches the plugin again in
    ``service.config.sections[NAME]``.

    :return: a list of :class:`dynamod.api.ConfigSection`.
    """


@hookspec
def dynamod_service_definitions() -> list[ServiceDefinition]:
    """Return service files that installing this plugin makes known.

    Installing ``dynamod-logind`` makes the ``dynamod-logind`` service known
    without the administrator writing a file. A file named
    ``services/NAME.toml`` in the config directory overrides a definition of
    the same name; two plugins defining the same name is an error.

    :return: a list of :class:`dynamod.api.ServiceDefinition`.
    """


# ---------------------------------------------------------------------------
# Around spawn
# ---------------------------------------------------------------------------


@hookspec
def dynamod_spawn_prepare(service: ServiceContext, spec: SpawnSpec) -> None:
    """Adjust how a service process is spawned, just before it is spawned.

    Called for every spawn of the main process (not for ``stop-exec``). Add
    wrapper commands (``spec.wrapper``) that run before the program and then
    exec it, environment variables, descriptors to pass, or context managers
    to wrap the fork itself (``spec.around_fork``: for what the child inherits
    from the manager at fork time). This is where an isolation plugin places
    the process in its cgroup *before* it execs (the manager moves into the
    cgroup for the fork), enters namespaces (wrappers) and applies limits. No
    blocking I/O: creating a cgroup directory is fine, waiting on a network is
    not.

    Raising an exception fails this start of the service with the exception's
    message as the reason (the restart policy then applies).

    :param service: the service being started.
    :param spec: the spawn description to modify in place.
    """


@hookspec
def dynamod_service_started(service: ServiceContext, pid: int) -> None:
    """The service's main process was spawned with PID ``pid``.

    Called before readiness is awaited. Exceptions are logged and ignored.
    """


# ---------------------------------------------------------------------------
# Observation
# ---------------------------------------------------------------------------


@hookspec
def dynamod_service_state_changed(service: ServiceContext, old: str, new: str, reason: str) -> None:
    """A service moved from state ``old`` to state ``new``.

    Called after the transition is committed, once per implementation with
    each implementation isolated from the others' exceptions. States are
    ``stopped``, ``pending``, ``starting``, ``waiting-ready``, ``running``,
    ``exited`` (a finished oneshot), ``stopping``, ``restarting``,
    ``failed`` and ``blocked``; ``reason`` explains failures and blocks and is
    empty otherwise. Must not block: schedule work instead.
    """


@hookspec
def dynamod_service_status(service: ServiceContext) -> dict[str, Any]:
    """Return extra status fields for ``dynamodctl status``.

    The isolation plugin reports ``memory-current``, ``pids-current``,
    ``cpu-usage-usec`` and ``oom-kills``, for example. Values must be
    MessagePack-serialisable (numbers, strings, lists, maps). Results of all
    plugins are merged; exceptions are logged and ignored.

    :return: a mapping of field name to value.
    """


@hookspec(firstresult=True)
def dynamod_service_by_pid(pid: int) -> str | None:
    """Return the name of the service that process ``pid`` belongs to.

    The host answers for main and control PIDs it spawned; a plugin that can
    do better (the isolation plugin reads ``/proc/PID/cgroup``) answers for
    every process of a service. Stops at first non-None result.
    """


# ---------------------------------------------------------------------------
# Stop
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def dynamod_service_kill(service: ServiceContext, signal: int) -> bool | None:
    """Send ``signal`` to every process of the service, not just its main one.

    Called with SIGKILL when a service outlives its stop timeout, so that
    double-forked leftovers die too (the isolation plugin writes
    ``cgroup.kill``). Return ``True`` when handled; the host then does not
    signal the process group itself. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def dynamod_service_exit_reason(service: ServiceContext, pid: int, status: int | None) -> str | None:
    """Name the cause of the main process's exit better than its wait status.

    Called when the main process of a running or starting service exited,
    before the failure is recorded. The isolation plugin answers
    ``"oom-killed"`` when the kernel's OOM killer took the process, which the
    bare status (``killed by SIGKILL``) cannot tell. The answer becomes the
    reason shown by ``dynamodctl status``, followed by the status in
    parentheses. ``status`` is the raw wait status, or None when it cannot be
    known. Return None to say nothing. Stops at first non-None result;
    exceptions are logged and ignored.
    """


@hookspec
def dynamod_service_stopped(service: ServiceContext) -> None:
    """The service's main process is gone and it will not be restarted
    immediately: release what :func:`dynamod_spawn_prepare` created (remove
    the cgroup, for example). Exceptions are logged and ignored."""


# ---------------------------------------------------------------------------
# Boot (PID 1, Phase A)
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def dynamod_mount_root(cmdline: dict[str, str], newroot: str) -> bool | None:
    """Mount the real root file system on ``newroot`` from the initramfs.

    Called by dynamod-init when ``/`` is an initramfs and the kernel command
    line asks for a root (``root=``, ``dynamod.live``). ``cmdline`` maps each
    parameter to its value (``""`` for flags). Return ``True`` when the root
    is mounted, ``None`` when this plugin does not handle this command line;
    raise an exception with a clear message when it should handle it but
    cannot (init shows the message and drops to the emergency shell). Stops at
    first non-None result.
    """


# ---------------------------------------------------------------------------
# dynamodctl (hook project "dynamodctl", entry-point group "dynamodctl")
# ---------------------------------------------------------------------------


@ctl_hookspec
def dynamodctl_register_commands(app: Any) -> None:
    """Add subcommands to ``dynamodctl``.

    ``app`` is the root ``typer.Typer``; add commands with ``@app.command()``
    or groups with ``app.add_typer(sub, name="vm")``. dynamodctl loads CLI
    plugins only for commands that are not built in (and for ``--help`` and
    ``plugins``), so the hot paths (``status``, ``list``) never pay for them;
    still, keep heavy imports inside the command functions. Register this
    hook under the ``dynamodctl`` entry-point group, not ``dynamod``. A plugin
    whose commands clash with existing names is refused whole and shown by
    ``dynamodctl plugins``.
    """
