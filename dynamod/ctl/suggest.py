"""Close-match suggestions for a mistyped command or option.

A suggestion must be what the user most likely meant, or nothing: click's
difflib ratio offered ``shutdown`` for ``show`` (a systemctl verb dynamodctl
does not have), which sends a systemctl user to the one command that powers
the machine off. So a word is suggested only when it is within a typo of
the input — one edit (insert, delete, replace, swap two neighbours), two
from seven letters on — or the input is the start of it (``sta``).
Known systemctl spellings of dynamodctl commands (``daemon-reload``) are
suggested by name. Loaded only when a usage error happens.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# systemctl (and habit) words -> what dynamodctl calls them. Only for words
# that are not dynamodctl commands: a verb added to the table wins.
SYNONYMS = {
    "daemon-reload": "reload",
    "list-units": "list",
    "list-unit-files": "list",
    "poweroff": "shutdown poweroff",
    "reboot": "shutdown reboot",
    "halt": "shutdown halt",
    "journal": "logs",
    "help": "--help",
    "version": "--version",
}
MAX_SHOWN = 3  # more than this many candidates is no suggestion at all


def distance(a: str, b: str) -> int:
    """Edits from ``a`` to ``b``: insertions, deletions, substitutions and
    swaps of two adjacent letters (optimal string alignment)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def close_matches(word: str, known: Iterable[str]) -> list[str]:
    """The known words ``word`` is a likely typo of (the nearest ones) or
    an abbreviation of, nearest first; empty when nothing is close or too
    many are."""
    core = word.lstrip("-")
    if not core:
        return []
    limit = 1 if len(core) < 7 else 2
    typos: list[tuple[int, str]] = []
    starts: list[str] = []
    for cand in dict.fromkeys(known):
        if cand == word:
            continue
        d = distance(word, cand)
        if d <= limit:
            typos.append((d, cand))
        elif len(core) >= 2 and cand.startswith(word):
            starts.append(cand)
    nearest = min((d for d, _ in typos), default=0)
    found = [c for d, c in sorted(typos) if d == nearest] + starts
    return found if len(found) <= MAX_SHOWN else []


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` (or ``'x' or 'y'``), or ``""``."""
    matches = close_matches(word, known)
    if not matches:
        return ""
    quoted = [f"'{m}'" for m in matches]
    text = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f" Did you mean {text}?"


def command_hint(word: str, known: Iterable[str]) -> str:
    """The suggestion for an unknown command: a systemctl synonym, else the
    close matches among ``known``."""
    if word in SYNONYMS:
        return f" Did you mean '{SYNONYMS[word]}'?"
    return did_you_mean(word, known)
