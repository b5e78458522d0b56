"""The fast path: the hot, simple invocations without building the typer app.

typer (with pydantic, via typer._adapters) costs ~250 ms of CPU per run here;
``dynamodctl status web`` is run by hand and in loops by scripts. This parser
accepts exactly these shapes, with ``--socket PATH`` / ``--socket=PATH``
before the command or anywhere after it:

    status NAME... [--json]
    list [--json]
    is-active NAME... [-q|--quiet]
    --version

and returns None for anything else (help, other commands, an option it does
not know, a value that looks like an option), which then goes to the full
typer app. Whatever it accepts, typer accepts with the same meaning (last
``--socket`` wins, options may follow arguments), and both call the same
functions in :mod:`dynamod.ctl.commands`; tests/test_ctl.py compares the two.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_FLAGS = {
    "status": {"--json"},
    "list": {"--json"},
    "is-active": {"-q", "--quiet"},
}
_TAKES_NAMES = {"status", "is-active"}


def parse(argv: list[str]) -> tuple[Callable[..., int], tuple] | None:
    """``(function, args)`` for :func:`dynamod.ctl.commands.run`, or None."""
    socket: str | None = None
    i = 0
    # Global options before the command.
    while i < len(argv) and argv[i].startswith("-"):
        taken = _socket_option(argv, i)
        if taken is None:
            return _version(argv) if argv == ["--version"] else None
        socket, i = taken
    if i >= len(argv) or argv[i] not in _FLAGS:
        return None
    command = argv[i]
    flags: set[str] = set()
    names: list[str] = []
    i += 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            taken = _socket_option(argv, i)
            if taken is not None:
                socket, i = taken
                continue
            if arg not in _FLAGS[command]:
                return None
            flags.add(arg)
        elif command in _TAKES_NAMES and arg:
            names.append(arg)
        else:
            return None
        i += 1
    from dynamod.ctl import commands

    if command == "list":
        return commands.list_services, (socket, "--json" in flags)
    if not names:
        return None  # typer reports the missing argument
    if command == "status":
        return commands.status, (socket, names, "--json" in flags)
    return commands.is_active, (socket, names, bool(flags))


def _socket_option(argv: list[str], i: int) -> tuple[str, int] | None:
    """``(path, next index)`` if ``argv[i]`` is a usable ``--socket``."""
    arg = argv[i]
    if arg.startswith("--socket="):
        value = arg[len("--socket=") :]
        return (value, i + 1) if value else None
    if arg == "--socket" and i + 1 < len(argv):
        value = argv[i + 1]
        # click would take "--json" as the path; leave such oddities to it.
        return (value, i + 2) if value and not value.startswith("-") else None
    return None


def _version(argv: list[str]) -> tuple[Callable[..., int], tuple]:
    from dynamod.ctl.commands import version

    return version, ()
