"""Commands from plugins: a typer app that plugins add their commands to.

Plugins of the ``dynamodctl`` entry-point group implement
``dynamodctl_register_commands(app)`` and get a root ``typer.Typer``
(docs/cli.md, "Adding a subcommand from a plugin"). typer is imported only
here and only when such a plugin is installed and a command line needs it:
a command that is not built in, the root ``--help`` (which lists plugin
commands), ``plugins`` and completion of command names. Built-in commands
never pay for it (:mod:`dynamod.ctl.verbs` parses them).

Plugins are loaded one by one: a plugin that fails to import, raises,
registers a command typer cannot build, or takes a name that is already
used (a built-in or another plugin's) is rolled back and reported by
``dynamodctl plugins``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dynamod.ctl.wire import Conn
    from dynamod.plugins import PluginHost


def installed() -> bool:
    """Whether any ``dynamodctl`` plugin would be loaded (read from the
    entry_points.txt files, without importing anything heavy)."""
    if os.environ.get("DYNAMOD_PLUGINS_AUTOLOAD", "1") == "0":
        return False
    from dynamod.entrypoints import find_entry_points

    disabled = {n.strip() for n in os.environ.get("DYNAMOD_DISABLE_PLUGINS", "").split(",")}
    return any(ep.name not in disabled for ep in find_entry_points("dynamodctl"))


class State:
    """``ctx.obj`` of every plugin command."""

    def __init__(self, socket: str | None = None, plugins: PluginHost | None = None) -> None:
        self.socket = socket  # --socket given before the command, or None
        self.plugins = plugins  # the dynamodctl plugin host

    def connect(self, timeout: float | None = 30.0) -> Conn:
        """A connection to the daemon (``--socket``, DYNAMOD_SOCKET or the
        default), for plugin commands: ``conn.request(type, expect, body)``."""
        from dynamod.ctl.commands import connect

        return connect(self.socket, timeout)


class Loaded:
    """The plugin host and the click group holding the plugins' commands."""

    def __init__(self, host: PluginHost, command: Any) -> None:
        self.host = host
        self.command = command
        self.names: list[str] = list(getattr(command, "commands", {}))

    @property
    def summaries(self) -> list[tuple[str, str]]:
        """``(name, one-line help)`` of each plugin command, for --help."""
        out = []
        for name in self.names:
            cmd = self.command.commands[name]
            if not getattr(cmd, "hidden", False):
                out.append((name, cmd.get_short_help_str(limit=300)))
        return out


_loaded: Loaded | None = None


def load() -> Loaded:
    """Load the dynamodctl plugins (once per process)."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded


def _build_app() -> Any:
    import typer

    from dynamod.ctl.verbs import SOCKET_HELP

    app = typer.Typer(
        name="dynamodctl",
        add_completion=False,
        rich_markup_mode=None,  # plain click output: rich costs start-up time
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    socket_option = typer.Option(None, "--socket", metavar="PATH", help=SOCKET_HELP)

    def root(ctx, socket=socket_option):  # type: ignore[no-untyped-def]
        ctx.ensure_object(State).socket = socket

    # Real objects, not the strings `from __future__ import annotations`
    # makes: typer reads them to find the context parameter.
    root.__annotations__ = {"ctx": typer.Context, "socket": str | None, "return": None}
    app.callback()(root)
    return app


def _load() -> Loaded:
    import typer

    from dynamod.ctl.verbs import COMMANDS
    from dynamod.plugins import PluginProblem, make_plugin_host

    app = _build_app()
    host = make_plugin_host("dynamodctl")
    taken = set(COMMANDS)
    command = typer.main.get_command(app)
    known: set[str] = set()
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
            if names & taken or not known <= names or len(names - known) != added:
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
    return Loaded(host, command)


def run_plugin_command(loaded: Loaded, args: list[str]) -> int:
    """Run a plugin's command line through click (usage errors: one line)."""
    from typer._click import exceptions as click_exc

    from dynamod.ctl.exits import FAILED
    from dynamod.ctl.verbs import error

    try:
        result = loaded.command.main(
            args, prog_name="dynamodctl", standalone_mode=False, obj=State(plugins=loaded.host)
        )
    except click_exc.ClickException as exc:
        error(_one_line(exc))
        return exc.exit_code
    except click_exc.Abort:
        return FAILED
    except click_exc.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0


def _one_line(exc: Any) -> str:
    """click's usage errors take three lines (usage, hint, error); keep the
    error and the hint on one."""
    from typer._click import exceptions as click_exc

    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click_exc.UsageError) and ctx is not None:
        return f"{message} (see '{ctx.command_path} --help')"
    return message
