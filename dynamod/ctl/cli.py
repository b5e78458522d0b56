"""dynamodctl's command-line parser: options, arguments, commands.

Hand-written because typer costs 100-150 ms of start-up here (pydantic
through ``typer._adapters``) and dynamodctl promises every command in
under 40 ms (docs/cli.md, "The parser"). It follows click's rules, so the
command line means what it meant when typer parsed it:

* long options ``--opt VALUE`` / ``--opt=VALUE``, flags ``--flag``;
* short options ``-n 5`` / ``-n5``, and clusters of them (``-fn5``);
* options and arguments in any order after the command; ``--`` ends the
  options; an option's value is the next word, whatever it looks like;
* ``-h`` / ``--help`` anywhere before ``--`` asks for help; a bad word is
  reported before help, a missing argument after it;
* the last of a repeated option wins (``multiple`` options collect).

The parser only knows :class:`Opt`, :class:`Arg` and :class:`Command`; the
commands themselves are declared in :mod:`dynamod.ctl.verbs`. Kept free of
imports: it runs on every invocation.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

HELP_NAMES = ("-h", "--help")


class UsageError(Exception):
    """A bad command line: exit 2 with one line on stderr. ``command`` is
    the command whose ``--help`` the message points to (``""``: the root,
    None: no pointer)."""

    def __init__(self, message: str, command: str | None = "") -> None:
        super().__init__(message)
        self.message = message
        self.command = command


class Param:
    """What options and arguments share: help, the allowed values, what
    shell completion offers (``"files"``, ``"dirs"``, ``"services"``,
    ``"services:up"``, ``"services:down"``, ``"services:failed"``, and for
    option values ``"states"``, ``"properties"``, ``"signals"``; choices
    complete by themselves) and the keyword the command's function gets."""

    __slots__ = ("choices", "complete", "dest", "help")

    def __init__(self, help: str, choices: Sequence[str], complete: str | None, dest: str) -> None:
        self.help = help
        self.choices = tuple(choices)
        self.complete = complete
        self.dest = dest


class Opt(Param):
    """An option. Without ``metavar`` it is a flag (True when given);
    with one it takes a value: a string, an ``int`` (``type=int``, at least
    ``min``) or one of ``choices``. ``multiple`` collects every occurrence
    into a list. The keyword is the first long name, ``-`` made ``_``."""

    __slots__ = ("default", "metavar", "min", "multiple", "names", "type")

    def __init__(
        self,
        *names: str,
        help: str = "",
        metavar: str | None = None,
        default: Any = None,
        type: Callable[[str], Any] | None = None,
        choices: Sequence[str] = (),
        min: int | None = None,
        multiple: bool = False,
        complete: str | None = None,
        dest: str | None = None,
    ) -> None:
        longs = [n for n in names if n.startswith("--")]
        key = (longs[0] if longs else names[0]).lstrip("-").replace("-", "_")
        super().__init__(help, choices, complete, dest or key)
        self.names = names
        self.metavar = metavar
        self.type = type
        self.min = min
        self.multiple = multiple
        if metavar is None:
            self.default = False if default is None else default
        else:
            self.default = [] if multiple and default is None else default

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None

    @property
    def display(self) -> str:
        """How errors name the option: ``'--lines' / '-n'``."""
        return " / ".join(f"'{n}'" for n in self.names)

    def convert(self, value: str, command: str) -> Any:
        return _convert(value, self.display, self.type, self.choices, self.min, command)


class Arg(Param):
    """A positional argument; ``many`` takes one or more words (the rest
    of the line, less what later arguments need). The keyword is the name
    in lower case."""

    __slots__ = ("many", "name", "required")

    def __init__(
        self,
        name: str,
        help: str = "",
        *,
        many: bool = False,
        required: bool = True,
        choices: Sequence[str] = (),
        complete: str | None = None,
        dest: str | None = None,
    ) -> None:
        super().__init__(help, choices, complete, dest or name.lower().replace("-", "_"))
        self.name = name
        self.many = many
        self.required = required

    @property
    def metavar(self) -> str:
        base = "{" + "|".join(self.choices) + "}" if self.choices else self.name
        return base + "..." if self.many else base


class Command:
    """A verb: its name, what it runs, its help text (first paragraph: the
    one-line summary in ``dynamodctl --help``) and its parameters.

    ``run`` is called with one keyword argument per parameter (the ``dest``
    of each :class:`Opt` and :class:`Arg`) and returns the exit code.
    ``hidden`` commands work but are not listed nor suggested."""

    __slots__ = ("help", "hidden", "name", "params", "run")

    def __init__(
        self,
        name: str,
        run: Callable[..., int],
        help: str,
        *params: Opt | Arg,
        hidden: bool = False,
    ) -> None:
        self.name = name
        self.run = run
        self.help = help
        self.params = params
        self.hidden = hidden

    @property
    def options(self) -> list[Opt]:
        return [p for p in self.params if isinstance(p, Opt)]

    @property
    def arguments(self) -> list[Arg]:
        return [p for p in self.params if isinstance(p, Arg)]

    @property
    def summary(self) -> str:
        return " ".join(self.help.split("\n\n", 1)[0].split())

    def option(self, name: str) -> Opt | None:
        for opt in self.options:
            if name in opt.names:
                return opt
        return None


class Parsed:
    """What :func:`parse_options` found."""

    __slots__ = ("help", "positionals", "rest", "values")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.positionals: list[str] = []
        self.rest = 0  # index of the first word not consumed (stop_at_positional)
        self.help = False


def parse_options(
    options: Sequence[Opt], argv: Sequence[str], start: int, command: str, stop_at_positional: bool
) -> Parsed:
    """Options from ``argv[start:]``; positionals are collected, or with
    ``stop_at_positional`` end the scan (the root's options end at the
    command). Raises UsageError naming ``command`` for --help pointers."""
    by_name = {n: o for o in options for n in o.names}
    p = Parsed()
    p.values = {o.dest: list(o.default) if o.multiple else o.default for o in options}
    i = start
    n = len(argv)
    while i < n:
        word = argv[i]
        if word == "--":
            if stop_at_positional:
                i += 1
                break
            p.positionals.extend(argv[i + 1 :])
            i = n
            break
        if word[:1] != "-" or word == "-":
            if stop_at_positional:
                break
            p.positionals.append(word)
            i += 1
            continue
        i += 1
        if word.startswith("--"):
            name, eq, attached = word.partition("=")
            opt = None if name in HELP_NAMES else _lookup(by_name, name, options, command)
            if opt is None or not opt.takes_value:
                if eq:
                    raise UsageError(f"Option '{name}' does not take a value.", None)
                _flag(p, opt)
                continue
            value, i = _value(name, attached if eq else None, argv, i)
            _store(p, opt, opt.convert(value, command))
            continue
        # A cluster of short options: -q, -fn5, -n 5.
        for k in range(1, len(word)):
            name = "-" + word[k]
            opt = None if name in HELP_NAMES else _lookup(by_name, name, options, command)
            if opt is None or not opt.takes_value:
                _flag(p, opt)
                continue
            value, i = _value(name, word[k + 1 :] or None, argv, i)
            _store(p, opt, opt.convert(value, command))
            break
    p.rest = i
    return p


def _lookup(by_name: dict[str, Opt], name: str, options: Sequence[Opt], command: str) -> Opt:
    opt = by_name.get(name)
    if opt is None:
        raise UsageError(_no_such_option(name, options), command)
    return opt


def _value(name: str, attached: str | None, argv: Sequence[str], i: int) -> tuple[str, int]:
    """An option's value: attached (``--opt=V``, ``-nV``), else the next
    word; and the index after it."""
    if attached is not None:
        return attached, i
    if i >= len(argv):
        raise UsageError(f"Option '{name}' requires an argument.", None)
    return argv[i], i + 1


def _flag(p: Parsed, opt: Opt | None) -> None:
    """A flag was given; None is -h/--help."""
    if opt is None:
        p.help = True
    else:
        _store(p, opt, True)


def _store(p: Parsed, opt: Opt, value: Any) -> None:
    if opt.multiple:
        p.values[opt.dest].append(value)
    else:
        p.values[opt.dest] = value


def assign_arguments(cmd: Command, positionals: list[str], values: dict[str, Any]) -> None:
    """Give each Arg its word(s), in order; a ``many`` argument takes what
    the arguments after it leave."""
    args = cmd.arguments
    words = list(positionals)
    for idx, arg in enumerate(args):
        if arg.many:
            later = sum(1 for a in args[idx + 1 :] if a.required)
            take = max(0, len(words) - later)
            got, words = words[:take], words[take:]
            if not got and arg.required:
                raise UsageError(_missing(arg), cmd.name)
            values[arg.dest] = [
                _convert(w, f"'{arg.name}'", None, arg.choices, None, cmd.name) for w in got
            ]
            continue
        if not words:
            if arg.required:
                raise UsageError(_missing(arg), cmd.name)
            values[arg.dest] = None
            continue
        values[arg.dest] = _convert(
            words.pop(0), f"'{arg.name}'", None, arg.choices, None, cmd.name
        )
    if words:
        s = "" if len(words) == 1 else "s"
        raise UsageError(f"Got unexpected extra argument{s} ({' '.join(words)})", cmd.name)


def _missing(arg: Arg) -> str:
    text = f"Missing argument '{arg.name}'."
    if arg.choices:
        text += f" Choose from: {', '.join(arg.choices)}"
    return text


def _convert(
    value: str,
    display: str,
    type: Callable[[str], Any] | None,
    choices: tuple[str, ...],
    minimum: int | None,
    command: str,
) -> Any:
    if choices and value not in choices:
        allowed = ", ".join(f"'{c}'" for c in choices)
        raise UsageError(
            f"Invalid value for {display}: '{value}' is not one of {allowed}.", command
        )
    if type is int:
        try:
            number = int(value)
        except ValueError:
            raise UsageError(
                f"Invalid value for {display}: '{value}' is not a valid integer.", command
            ) from None
        if minimum is not None and number < minimum:
            raise UsageError(
                f"Invalid value for {display}: {number} is not in the range x>={minimum}.", command
            )
        return number
    return type(value) if type is not None else value


def _no_such_option(name: str, options: Sequence[Opt]) -> str:
    from dynamod.ctl.suggest import did_you_mean

    known = [n for o in options for n in o.names if n.startswith("--")] + ["--help"]
    hint = did_you_mean(name, known)
    return f"No such option: {name}" + (f".{hint}" if hint else "")
