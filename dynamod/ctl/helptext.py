"""``--help`` text, drawn from the command table (:mod:`dynamod.ctl.verbs`).

The layout is click's (what dynamodctl printed when typer drew it): a usage
line, the help paragraphs, then ``Arguments:``, ``Options:`` and
``Commands:`` as two columns, wrapped to the terminal (at most 80 columns,
as click does). Imported only when help is asked for.
"""

from __future__ import annotations

import os
import sys

from dynamod.ctl.cli import Command, Opt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

PROG = "dynamodctl"
HELP_ROW = ("-h, --help", "Show this message and exit.")
COL_MAX = 30  # a first column wider than this puts its text on the next line


def width() -> int:
    """click's rule: the terminal's width (``$COLUMNS`` first), at most 80,
    less a margin of 2, at least 50."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 80
    return max(min(columns, 80) - 2, 50)


def wrap(text: str, limit: int) -> list[str]:
    """Greedy word wrap; a word longer than ``limit`` stays whole. Two
    spaces between words (before ``[required]``) stay two."""
    lines: list[str] = []
    line = ""
    for chunk in text.split():
        words = chunk.split("\0")
        for k, word in enumerate(words):
            gap = "  " if k else " "
            if line and len(line) + len(gap) + len(word) > limit:
                lines.append(line)
                line = word
            else:
                line = f"{line}{gap}{word}" if line else word
    if line:
        lines.append(line)
    return lines or [""]


def _two_spaces(text: str) -> str:
    # Kept through wrap(): a double space becomes a marker inside one chunk.
    return text.replace("  ", "\0")


def short(text: str, limit: int) -> str:
    """click's one-line summary: the first sentence, or as many words as
    fit in ``limit`` followed by "..."."""
    words = text.split()
    out: list[str] = []
    length = 0
    for word in words:
        length += len(word) + (1 if out else 0)
        if length > limit:
            while out and len(" ".join(out)) + 3 > limit:
                out.pop()
            return " ".join(out) + "..."
        out.append(word)
        if word.endswith("."):
            break
    return " ".join(out)


def paragraphs(text: str, indent: int, w: int) -> list[str]:
    """Blank-line separated paragraphs, each wrapped and indented; one
    that starts with a ``\\b`` line is printed as it is (click's mark)."""
    out: list[str] = []
    for para in text.strip().split("\n\n"):
        if out:
            out.append("")
        if para.startswith("\b\n"):
            out.extend(" " * indent + line for line in para.splitlines()[1:])
        else:
            out.extend(" " * indent + line for line in wrap(para, max(w - indent, 11)))
    return out


def columns(rows: Sequence[tuple[str, str]], w: int, indent: int = 2) -> list[str]:
    """Two columns: names, and their text wrapped beside them."""
    first = min(max((len(name) for name, _ in rows), default=0), COL_MAX) + 2
    text_width = max(w - first - 2, 10)
    out = []
    for name, text in rows:
        if not text:
            out.append(" " * indent + name)
            continue
        lines = wrap(_two_spaces(text), text_width)
        if len(name) <= first - 2:
            out.append(" " * indent + name.ljust(first) + lines[0])
        else:
            out.append(" " * indent + name)
            out.append(" " * (indent + first) + lines[0])
        out.extend(" " * (indent + first) + line for line in lines[1:])
    return out


def option_row(opt: Opt) -> tuple[str, str]:
    names = sorted(opt.names, key=lambda n: n.startswith("--"))  # short ones first
    name = ", ".join(names) + (f" {opt.metavar}" if opt.takes_value else "")
    notes = []
    if opt.choices:
        notes.append("|".join(opt.choices))
    if opt.takes_value and opt.default not in (None, []):
        notes.append(f"default: {opt.default}")
    if opt.min is not None:
        notes.append(f"x>={opt.min}")
    text = opt.help + (f"  [{'; '.join(notes)}]" if notes else "")
    return name, text


def section(title: str, rows: Sequence[tuple[str, str]], w: int) -> list[str]:
    return ["", f"{title}:", *columns(rows, w)] if rows else []


def usage(cmd: Command) -> str:
    words = [PROG, cmd.name, "[OPTIONS]"]
    for arg in cmd.arguments:
        words.append(arg.metavar if arg.required else f"[{arg.metavar}]")
    return "Usage: " + " ".join(words)


def command_help(cmd: Command) -> str:
    w = width()
    lines = [usage(cmd), "", *paragraphs(cmd.help, 2, w)]
    args = [(a.metavar, a.help + ("  [required]" if a.required else "")) for a in cmd.arguments]
    lines += section("Arguments", args, w)
    lines += section("Options", [*(option_row(o) for o in cmd.options), HELP_ROW], w)
    return "\n".join(lines) + "\n"


def root_help(
    summary: str,
    options: Iterable[Opt],
    commands: Iterable[tuple[str, str]],
    epilog: str,
) -> str:
    w = width()
    lines = [f"Usage: {PROG} [OPTIONS] COMMAND [ARGS]...", "", *paragraphs(summary, 2, w)]
    lines += section("Options", [*(option_row(o) for o in options), HELP_ROW], w)
    commands = list(commands)
    limit = w - 6 - max((len(name) for name, _ in commands), default=0)
    lines += section("Commands", [(name, short(text, limit)) for name, text in commands], w)
    if epilog:
        lines.append("")
        lines += ["  " + line if line else "" for line in epilog.splitlines()]
    return "\n".join(lines) + "\n"
