"""The command table of dynamodctl, and running one command line.

Every built-in command is one :class:`~dynamod.ctl.cli.Command` in
``COMMANDS``: its name, the function it runs, its help text and its
options and arguments. The parser (:mod:`dynamod.ctl.cli`), ``--help``
(:mod:`dynamod.ctl.helptext`) and shell completion
(:mod:`dynamod.ctl.completion`) all read this table, so a verb or an
option added here is parsed, documented and completed at once. To add one
(docs/cli.md, "Adding a command"):

1. write ``def _verb(names, socket, ...) -> int`` below: one keyword per
   parameter ``dest``; it calls the implementation (usually in
   :mod:`dynamod.ctl.commands`) and returns the exit code;
2. add ``Command("verb", _verb, "Help...", NAMES, SOME_OPTION, SOCKET)``
   to ``COMMANDS`` (the order there is the order in ``--help``).

Handlers import what they need when they run: this module is imported by
every invocation, and ``--help`` or ``--version`` need no socket code.
Plugin commands (typer, the ``dynamodctl`` entry-point group) are handled
by :mod:`dynamod.ctl.app` and only when the command is not in this table.
"""

from __future__ import annotations

import sys

from dynamod.ctl.cli import Arg, Command, Opt, UsageError, assign_arguments, parse_options
from dynamod.ctl.exits import EPILOG, OK, USAGE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

PROG = "dynamodctl"
ROOT_HELP = "Control dynamod, the service manager."
SOCKET_HELP = "Control socket [default: $DYNAMOD_SOCKET or /run/dynamod/control.sock]."

# --- parameters shared by several commands ---------------------------------------

SOCKET = Opt("--socket", metavar="PATH", help=SOCKET_HELP, complete="files")
JSON = Opt("--json", help="Print the daemon's raw data as JSON.")
NAMES = Arg("NAME", "Service names.", many=True, complete="services", dest="names")
NO_BLOCK = Opt("--no-block", help="Do not wait: print the job's id once it is queued.")
JOB_MODE = Opt(
    "--job-mode", metavar="MODE", choices=("replace", "fail"), default="replace",
    help="What to do with a conflicting job already pending on the service: "
    "replace cancels it, fail refuses this one [default: replace].",
)
QUIET = Opt("--quiet", "-q", help="Print nothing; only the exit code.")
NOW_STOP = Opt("--now", help="Also stop them now.")
ROOT_OPTIONS = (SOCKET, Opt("--version", help="Print the version and exit."))


def _commands() -> ModuleType:
    from dynamod.ctl import commands

    return commands


# --- what each command runs -------------------------------------------------------


# Service states (dynamod/svmgr/states.py), for `list --state`.
STATES = ("stopped", "pending", "starting", "waiting-ready", "running", "exited", "stopping",
          "restarting", "failed", "blocked")


def _states(value: str) -> str:
    bad = [s for s in value.split(",") if s and s not in STATES]
    if bad:
        raise UsageError(f"Invalid value for '--state': {', '.join(map(repr, bad))} is not a state "
                         f"(states: {', '.join(STATES)}).", "list")
    return value


def _list(patterns: list[str], failed: bool, state: list[str], json: bool, socket: str | None) -> int:
    c = _commands()
    return c.run(c.list_services, socket, json, failed, state, patterns)


def _units() -> ModuleType:
    from dynamod.ctl import unitcmds

    return unitcmds


def _unit_file(verb: str):  # enable / disable / mask / unmask differ only in the verb
    def run(names: list[str], now: bool, socket: str | None) -> int:
        return _commands().run(_units().unit_file, socket, verb, names, now)

    return run


def _unmask(names: list[str], socket: str | None) -> int:
    return _commands().run(_units().unit_file, socket, "unmask", names, False)


def _is_enabled(names: list[str], quiet: bool, socket: str | None) -> int:
    return _commands().run(_units().is_state, socket, names, quiet, "enablement", "enabled")


def _is_failed(names: list[str], quiet: bool, socket: str | None) -> int:
    return _commands().run(_units().is_state, socket, names, quiet, "state", "failed")


def _reset_failed(names: list[str], socket: str | None) -> int:
    return _commands().run(_units().reset_failed, socket, names)


def _show(names: list[str], property: list[str], value: bool, socket: str | None) -> int:
    return _commands().run(_units().show, socket, names, property, value)


def _cat(names: list[str], socket: str | None) -> int:
    return _commands().run(_units().cat, socket, names)


def _kill(names: list[str], signal: str, main: bool, kill_whom: str | None, socket: str | None) -> int:
    whom = kill_whom or ("main" if main else "all")
    return _commands().run(_units().kill, socket, names, signal, whom)


def _analyze(what: str | None, name: str | None, socket: str | None) -> int:
    from dynamod.ctl import analyze

    return _commands().run(analyze.analyze, socket, what, name)


def _edit(name: str, no_reload: bool, socket: str | None) -> int:
    return _commands().run(_units().edit, socket, name, no_reload)


def _status(names: list[str], json: bool, socket: str | None) -> int:
    c = _commands()
    return c.run(c.status, socket, names, json)


def _is_active(names: list[str], quiet: bool, socket: str | None) -> int:
    c = _commands()
    return c.run(c.is_active, socket, names, quiet)


def _tree(json: bool, socket: str | None) -> int:
    c = _commands()
    return c.run(c.tree, socket, json)


def _change(request: str):  # start / stop / restart differ only in the request
    def run(names: list[str], no_block: bool, job_mode: str, socket: str | None) -> int:
        c = _commands()
        return c.run(c.change, socket, request, names, no_block, job_mode)

    return run


def _reload(socket: str | None) -> int:
    c = _commands()
    return c.run(c.reload, socket)


def _shutdown(kind: str, socket: str | None) -> int:
    c = _commands()
    return c.run(c.shutdown, socket, kind)


def _logs(name: str, lines: int, follow: bool, socket: str | None) -> int:
    c = _commands()
    return c.run(c.logs, socket, name, lines, follow)


def _check(config_dir: str | None, json: bool) -> int:
    from dynamod.ctl import offline

    c = _commands()
    return c.run(offline.check, config_dir, json)


def _plugins(json: bool) -> int:
    from dynamod.ctl import app, offline

    c = _commands()
    host = app.load().host if app.installed() else None
    return c.run(offline.plugins, host, json)


def _completion(shell: str) -> int:
    from dynamod.ctl import completion

    sys.stdout.write(completion.script(shell))
    return OK


def _complete(shell: str, words: list[str]) -> int:
    from dynamod.ctl import completion

    return completion.answer(shell, words)


# --- the table ---------------------------------------------------------------------

COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command(
            "list",
            _list,
            "List services: state, pid, time in state, restarts, supervisor, reason.\n\n"
            "PATTERN (shell-style: 'web*', 'db-?') keeps the services whose name matches one.",
            Arg("PATTERN", "Name patterns.", many=True, required=False, complete="services",
                dest="patterns"),
            Opt("--failed", help="Only failed services (as --state failed)."),
            Opt("--state", metavar="STATE", multiple=True, type=_states, choices=(),
                help="Only services in this state (repeat it, or STATE,STATE).", complete="states"),
            JSON,
            SOCKET,
        ),
        Command(
            "status",
            _status,
            "Show a service's state, process, supervision and last log lines.\n\n"
            "Exit 3 when a service is not up (neither running nor a finished oneshot), "
            "as systemctl status does; with --json it exits 0 whenever it could ask.",
            NAMES,
            JSON,
            SOCKET,
        ),
        Command(
            "is-active",
            _is_active,
            "Print each service's state; exit 0 only if all are up (for scripts).",
            NAMES,
            QUIET,
            SOCKET,
        ),
        Command(
            "tree",
            _tree,
            "Show the supervisor tree: strategy, restarts in the window, escalations.",
            JSON,
            SOCKET,
        ),
        Command(
            "start",
            _change("StartService"),
            "Start services (and what they require); wait until they are up.\n\n"
            "Each start is a job: the command waits for it, prints the other services "
            "it started or blocked, and exits non-zero when it did not end done.",
            Arg("NAME", "Service names.", many=True, complete="services:down", dest="names"),
            NO_BLOCK,
            JOB_MODE,
            SOCKET,
        ),
        Command(
            "stop",
            _change("StopService"),
            "Stop services; what requires them is stopped first.\n\n"
            "Prints the other services the stop stopped or blocked.",
            Arg("NAME", "Service names.", many=True, complete="services:up", dest="names"),
            NO_BLOCK,
            JOB_MODE,
            SOCKET,
        ),
        Command(
            "restart",
            _change("RestartService"),
            "Restart services (start them if they are not running).\n\n"
            "Prints the dependents the restart bounced.",
            NAMES,
            NO_BLOCK,
            JOB_MODE,
            SOCKET,
        ),
        Command(
            "try-restart",
            _change("TryRestartService"),
            "Restart services that are running; leave the others alone.",
            NAMES,
            NO_BLOCK,
            JOB_MODE,
            SOCKET,
        ),
        Command(
            "enable",
            _unit_file("enable"),
            "Start services at boot (and at every svmgr start); --now starts them too.\n\n"
            "Recorded in the override directory; the service files are not changed.",
            NAMES,
            Opt("--now", help="Also start them now."),
            SOCKET,
        ),
        Command(
            "disable",
            _unit_file("disable"),
            "Do not start services at boot; a running one goes on running (--now stops it).",
            NAMES,
            NOW_STOP,
            SOCKET,
        ),
        Command(
            "mask",
            _unit_file("mask"),
            "Forbid starting services, by hand or as a dependency, until unmasked.\n\n"
            "A running one goes on running (--now stops it); what requires it is blocked.",
            NAMES,
            NOW_STOP,
            SOCKET,
        ),
        Command("unmask", _unmask, "Allow masked services to be started again.", NAMES, SOCKET),
        Command(
            "is-enabled",
            _is_enabled,
            "Print each service's enablement (enabled, disabled, masked); exit 0 if one is enabled.",
            NAMES,
            QUIET,
            SOCKET,
        ),
        Command(
            "is-failed",
            _is_failed,
            "Print each service's state; exit 0 if one is failed.",
            NAMES,
            QUIET,
            SOCKET,
        ),
        Command(
            "reset-failed",
            _reset_failed,
            "Forget that services failed: failed ones become stopped, restart counts reset.\n\n"
            "Without NAME, every failed service.",
            Arg("NAME", "Service names.", many=True, required=False, complete="services:failed",
                dest="names"),
            SOCKET,
        ),
        Command(
            "show",
            _show,
            "Print every property of a service as KEY=VALUE (for scripts).\n\n"
            "The keys are stable; docs/cli.md lists them.",
            NAMES,
            Opt("--property", "-p", metavar="PROP", multiple=True,
                help="Only this property (repeat it, or PROP,PROP).", complete="properties"),
            Opt("--value", help="Print the values only."),
            SOCKET,
        ),
        Command(
            "cat",
            _cat,
            "Print the files that define a service: its file, its override, its enable/mask state.",
            NAMES,
            SOCKET,
        ),
        Command(
            "kill",
            _kill,
            "Send a signal to a service's processes (all of them, or --main).",
            Arg("NAME", "Service names.", many=True, complete="services:up", dest="names"),
            Opt("--signal", "-s", metavar="SIGNAL", default="TERM", complete="signals",
                help="Signal name or number (TERM, SIGKILL, HUP, 9, RTMIN+1) [default: TERM]."),
            Opt("--main", help="Only the main process (as --kill-whom main)."),
            Opt("--kill-whom", metavar="WHOM", choices=("all", "main", "control"),
                help="all (the default: every process, the whole cgroup with isolation), "
                "main, or control (stop-exec processes)."),
            SOCKET,
        ),
        Command(
            "edit",
            _edit,
            "Edit a service's override in $EDITOR; it is checked, saved, then reloaded.\n\n"
            "The override (overrides/NAME.toml in the config directory) is merged over "
            "the service's file, which stays unchanged. A file that would not load is "
            "refused with the errors and nothing is saved.",
            Arg("NAME", "Service name.", complete="services"),
            Opt("--no-reload", help="Save only; apply it at the next 'dynamodctl reload'."),
            SOCKET,
        ),
        Command(
            "analyze",
            _analyze,
            "How the boot went: totals, blame, critical-chain [NAME], plot (SVG), dot.\n\n"
            "time (the default): kernel, initramfs and init where dynamod-init recorded "
            "them, then svmgr's start to the last service ready; blame: services by "
            "their time from start to ready; critical-chain: the dependencies that "
            "decided when NAME (default: the last one) was ready; plot: an SVG "
            "timeline (dynamodctl analyze plot > boot.svg); dot: the dependency graph "
            "for graphviz (| dot -Tsvg > deps.svg).",
            Arg("what", "What to show.", required=False,
                choices=("time", "blame", "critical-chain", "plot", "dot")),
            Arg("NAME", "critical-chain: the service.", required=False, complete="services"),
            SOCKET,
        ),
        Command("reload", _reload, "Re-read the configuration and apply the differences.", SOCKET),
        Command(
            "shutdown",
            _shutdown,
            "Stop every service, then power off, reboot or halt.",
            Arg(
                "kind",
                "What to do once services are stopped.",
                choices=("poweroff", "reboot", "halt"),
            ),
            SOCKET,
        ),
        Command(
            "logs",
            _logs,
            "Show a service's recent output (stdout and stderr).",
            Arg("NAME", "Service name.", complete="services"),
            Opt(
                "--lines",
                "-n",
                metavar="N",
                help="How many recent lines.",
                type=int,
                min=0,
                default=50,
            ),
            Opt("--follow", "-f", help="Keep printing new lines (Ctrl-C ends)."),
            SOCKET,
        ),
        Command(
            "check",
            _check,
            "Validate a configuration without a running daemon (plugins included).",
            Opt(
                "--config-dir",
                metavar="DIR",
                help="Config tree to check [default: $DYNAMOD_CONFIG_DIR or /etc/dynamod].",
                complete="dirs",
            ),
            Opt("--json", help="One JSON object per finding (severity, file, key, line, message)."),
        ),
        Command(
            "plugins",
            _plugins,
            "List installed plugins of both groups and what failed to load.",
            JSON,
        ),
        Command(
            "completion",
            _completion,
            "Print the shell completion script for bash, zsh or fish.\n\n"
            "Load it now, or install it for every new shell (docs/cli.md):\n\n"
            "\b\n"
            "  source <(dynamodctl completion bash)\n"
            "  dynamodctl completion zsh > \"${fpath[1]}/_dynamodctl\"\n"
            "  dynamodctl completion fish > ~/.config/fish/completions/dynamodctl.fish",
            Arg("shell", "The shell.", choices=("bash", "zsh", "fish")),
        ),
        # What the completion scripts call: `__complete SHELL -- WORD...`.
        Command(
            "__complete",
            _complete,
            "Complete the last WORD (for the completion scripts).",
            Arg("shell", choices=("bash", "zsh", "fish")),
            Arg("WORD", many=True, required=False, dest="words"),
            hidden=True,
        ),
    )
}


# --- running a command line ----------------------------------------------------------


def run(argv: list[str]) -> int:
    """Parse ``argv`` (without the program name) and run the command."""
    try:
        return _run(argv)
    except UsageError as exc:
        usage_error(exc.message, exc.command)
        return USAGE


def _run(argv: list[str]) -> int:
    root = parse_options(ROOT_OPTIONS, argv, 0, "", stop_at_positional=True)
    if root.help:
        sys.stdout.write(root_help())
        return OK
    if root.values["version"]:
        from dynamod import __version__

        sys.stdout.write(f"{PROG} {__version__}\n")
        return OK
    if root.rest >= len(argv):
        if not argv:  # bare `dynamodctl`: the help, as a usage error
            sys.stderr.write(root_help())
            return USAGE
        raise UsageError("Missing command.")
    name = argv[root.rest]
    cmd = COMMANDS.get(name)
    if cmd is None:
        return _not_builtin(argv, name)
    p = parse_options(cmd.options, argv, root.rest + 1, name, stop_at_positional=False)
    if p.help:
        from dynamod.ctl.helptext import command_help

        sys.stdout.write(command_help(cmd))
        return OK
    assign_arguments(cmd, p.positionals, p.values)
    if "socket" in p.values:
        # A --socket after the command wins over one before it.
        p.values["socket"] = p.values["socket"] or root.values["socket"]
    return cmd.run(**p.values)


def _not_builtin(argv: list[str], name: str) -> int:
    """A plugin's command, or an unknown one."""
    from dynamod.ctl import app

    known = [c.name for c in COMMANDS.values() if not c.hidden]
    problems: list[str] = []
    if app.installed():
        loaded = app.load()
        if name in loaded.names:
            return app.run_plugin_command(loaded, argv)
        known += loaded.names
        problems = sorted({repr(p.name) for p in loaded.host.problems})
    from dynamod.ctl.suggest import command_hint

    usage_error(f"No such command '{name}'.{command_hint(name, known)}", "")
    if problems:
        error(
            f"warning: plugin {', '.join(problems)} failed to load; "
            "the command may be theirs (see 'dynamodctl plugins')"
        )
    return USAGE


def root_help() -> str:
    from dynamod.ctl import app
    from dynamod.ctl.helptext import root_help as render

    rows = [(c.name, c.summary) for c in COMMANDS.values() if not c.hidden]
    if app.installed():
        rows += app.load().summaries
    return render(ROOT_HELP, ROOT_OPTIONS, rows, EPILOG)


def error(message: str) -> None:
    sys.stdout.flush()  # a terminal shows both streams in the order written
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def usage_error(message: str, command: str | None) -> None:
    """One line, with the help to read: ``(see 'dynamodctl status --help')``."""
    if command is not None:
        message += f" (see '{PROG}{' ' + command if command else ''} --help')"
    error(message)
