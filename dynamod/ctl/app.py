"""The full command line, built with typer.

Reached for everything the fast path does not take (help, mutating commands,
plugin commands, unusual options). Each command parses its arguments and
calls the shared implementation in :mod:`dynamod.ctl.commands` or
:mod:`dynamod.ctl.offline`.

Plugins of the ``dynamodctl`` entry-point group add commands through the
``dynamodctl_register_commands(app)`` hook. They are loaded only when the
command is not a built-in one (or for help and ``plugins``), so built-in
commands never pay for importing them, and one by one: a plugin that fails
to import, raises, registers a command typer cannot build, or shadows an
existing command is rolled back and reported by ``dynamodctl plugins``.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click import exceptions as click_exc

from dynamod.ctl import commands, offline
from dynamod.ctl.exits import EPILOG, USAGE
from dynamod.ctl.wire import Conn

if TYPE_CHECKING:
    from dynamod.plugins import PluginHost


class State:
    """``ctx.obj`` of every command, plugin commands included."""

    def __init__(self, socket: str | None = None, plugins: PluginHost | None = None) -> None:
        self.socket = socket  # --socket given before the command, or None
        self.plugins = plugins  # the dynamodctl plugin host, when loaded

    def connect(self, timeout: float | None = 30.0) -> Conn:
        """A connection to the daemon (``--socket``, DYNAMOD_SOCKET or the
        default), for plugin commands: ``conn.request(type, expect, body)``."""
        return commands.connect(self.socket, timeout)


class ShutdownKind(StrEnum):
    poweroff = "poweroff"
    reboot = "reboot"
    halt = "halt"


SOCKET_HELP = "Control socket [default: $DYNAMOD_SOCKET or /run/dynamod/control.sock]."
Socket = Annotated[
    str | None, typer.Option("--socket", metavar="PATH", help=SOCKET_HELP, show_default=False)
]
Json = Annotated[bool, typer.Option("--json", help="Print the daemon's raw data as JSON.")]
Names = Annotated[
    list[str], typer.Argument(metavar="NAME", help="Service names.", show_default=False)
]


def _finish(code: int) -> None:
    if code:
        raise typer.Exit(code)


def _socket(ctx: typer.Context, socket: str | None) -> str | None:
    # A --socket after the command wins over one before it, as click does
    # for a repeated option; the fast path applies the same rule.
    return socket or ctx.ensure_object(State).socket


# --- the root ------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        commands.version()
        raise typer.Exit()


def root(
    ctx: typer.Context,
    socket: Socket = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Control dynamod, the service manager."""
    state = ctx.ensure_object(State)
    state.socket = socket


# --- daemon commands -------------------------------------------------------------


def status(ctx: typer.Context, names: Names, json: Json = False, socket: Socket = None) -> None:
    """Show a service's state, process, supervision and last log lines.

    Exit 3 when a service is not up (neither running nor a finished oneshot),
    as systemctl status does; with --json it exits 0 whenever it could ask."""
    _finish(commands.run(commands.status, _socket(ctx, socket), names, json))


def is_active(
    ctx: typer.Context,
    names: Names,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing; only the exit code.")
    ] = False,
    socket: Socket = None,
) -> None:
    """Print each service's state; exit 0 only if all are up (for scripts)."""
    _finish(commands.run(commands.is_active, _socket(ctx, socket), names, quiet))


def list_(ctx: typer.Context, json: Json = False, socket: Socket = None) -> None:
    """List every service: state, pid, time in state, restarts, supervisor, reason."""
    _finish(commands.run(commands.list_services, _socket(ctx, socket), json))


def tree(ctx: typer.Context, json: Json = False, socket: Socket = None) -> None:
    """Show the supervisor tree: strategy, restarts in the window, escalations."""
    _finish(commands.run(commands.tree, _socket(ctx, socket), json))


def start(ctx: typer.Context, names: Names, socket: Socket = None) -> None:
    """Start services (and what they require); wait until they are up."""
    _finish(commands.run(commands.change, _socket(ctx, socket), "StartService", names))


def stop(ctx: typer.Context, names: Names, socket: Socket = None) -> None:
    """Stop services; what requires them is stopped first."""
    _finish(commands.run(commands.change, _socket(ctx, socket), "StopService", names))


def restart(ctx: typer.Context, names: Names, socket: Socket = None) -> None:
    """Restart services (start them if they are not running)."""
    _finish(commands.run(commands.change, _socket(ctx, socket), "RestartService", names))


def reload(ctx: typer.Context, socket: Socket = None) -> None:
    """Re-read the configuration and apply the differences."""
    _finish(commands.run(commands.reload, _socket(ctx, socket)))


def shutdown(
    ctx: typer.Context,
    kind: Annotated[ShutdownKind, typer.Argument(help="What to do once services are stopped.")],
    socket: Socket = None,
) -> None:
    """Stop every service, then power off, reboot or halt."""
    _finish(commands.run(commands.shutdown, _socket(ctx, socket), kind.value))


def logs(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    lines: Annotated[
        int, typer.Option("--lines", "-n", metavar="N", help="How many recent lines.", min=0)
    ] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C ends).")
    ] = False,
    socket: Socket = None,
) -> None:
    """Show a service's recent output (stdout and stderr)."""
    _finish(commands.run(commands.logs, _socket(ctx, socket), name, lines, follow))


# --- offline commands ------------------------------------------------------------


def check(
    config_dir: Annotated[
        str | None,
        typer.Option(
            "--config-dir",
            metavar="DIR",
            show_default=False,
            help="Config tree to check [default: $DYNAMOD_CONFIG_DIR or /etc/dynamod].",
        ),
    ] = None,
    json: Annotated[
        bool, typer.Option("--json", help="One JSON object per finding (severity, file, key, line, message).")
    ] = False,
) -> None:
    """Validate a configuration without a running daemon (plugins included)."""
    _finish(commands.run(offline.check, config_dir, json))


def plugins(ctx: typer.Context, json: Json = False) -> None:
    """List installed plugins of both groups and what failed to load."""
    _finish(commands.run(offline.plugins, ctx.ensure_object(State).plugins, json))


BUILTINS: dict[str, Any] = {
    "list": list_,
    "status": status,
    "is-active": is_active,
    "tree": tree,
    "start": start,
    "stop": stop,
    "restart": restart,
    "reload": reload,
    "shutdown": shutdown,
    "logs": logs,
    "check": check,
    "plugins": plugins,
}
# Commands that never need the dynamodctl plugins loaded.
NO_PLUGINS = frozenset(BUILTINS) - {"plugins"}


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="dynamodctl",
        epilog=EPILOG,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,  # plain click output: rich costs start-up time
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    for name, fn in BUILTINS.items():
        app.command(name=name)(fn)
    return app


# --- plugins ---------------------------------------------------------------------


def load_plugins(app: typer.Typer) -> tuple[PluginHost, Any]:
    """Let each dynamodctl plugin add its commands; roll back and report a
    plugin whose additions break the app. Returns the host and the built
    click command."""
    from dynamod.plugins import PluginProblem, make_plugin_host

    host = make_plugin_host("dynamodctl")
    command = typer.main.get_command(app)
    known = set(getattr(command, "commands", {}))
    caller = host.hook.dynamodctl_register_commands
    for impl in reversed(caller.get_hookimpls()):  # registration order
        n_cmds, n_groups = len(app.registered_commands), len(app.registered_groups)
        try:
            if "app" in impl.argnames:
                impl.function(app=app)
            else:
                impl.function()
            added = len(app.registered_commands) - n_cmds + len(app.registered_groups) - n_groups
            if not added:
                continue
            built = typer.main.get_command(app)
            names = set(getattr(built, "commands", {}))
            if not known <= names or len(names - known) != added:
                raise ValueError("adds a command whose name is already taken")
        except Exception as exc:
            del app.registered_commands[n_cmds:]
            del app.registered_groups[n_groups:]
            host.problems.append(
                PluginProblem(
                    impl.plugin_name, f"dynamodctl_register_commands: {type(exc).__name__}: {exc}"
                )
            )
            continue
        command, known = built, names
    return host, command


def command_token(args: list[str]) -> str | None:
    """The subcommand named in ``args`` (skipping global options), or None."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if arg == "--socket":
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg
    return None


def run_app(args: list[str]) -> int:
    app = build_app()
    token = command_token(args)
    host = None
    if token in NO_PLUGINS:
        command = typer.main.get_command(app)
    else:
        host, command = load_plugins(app)
    try:
        result = command.main(
            args, prog_name="dynamodctl", standalone_mode=False, obj=State(plugins=host)
        )
    except click_exc.NoArgsIsHelpError as exc:
        # Bare `dynamodctl`: the help, as a usage error (exit 2) like click.
        sys.stderr.write(exc.ctx.get_help() + "\n" if exc.ctx else "")
        return USAGE
    except click_exc.ClickException as exc:
        commands.error(_one_line(exc))
        unknown = token is not None and token not in getattr(command, "commands", {})
        if unknown and host is not None and host.problems:
            names = ", ".join(sorted({repr(p.name) for p in host.problems}))
            commands.error(
                f"warning: plugin {names} failed to load; the command may be theirs (see 'dynamodctl plugins')"
            )
        return exc.exit_code
    except typer.Abort:
        return 1
    return result if isinstance(result, int) else 0


def _one_line(exc: click_exc.ClickException) -> str:
    """click's usage errors take three lines (usage, hint, error); keep the
    error and the hint on one."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click_exc.UsageError) and ctx is not None:
        return f"{message} (see '{ctx.command_path} --help')"
    return message
