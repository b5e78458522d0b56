"""Typed access to parsed TOML tables that records problems instead of raising.

A :class:`Table` hands out values by key, reports a wrong type or an invalid
value under the key's dotted name and falls back to the default, so one pass
over a file finds every problem in it. Keys that were never asked for are
"unknown key" errors when the table is finished.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from dynamod.config.model import Diagnostic
from dynamod.config.units import parse_duration, parse_signal, type_name

MAX_ERRORS_PER_SOURCE = 50

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
IDENT_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.$-]*", re.ASCII)


class Reporter:
    """Diagnostics of one source (file or plugin definition)."""

    def __init__(self, sink: list[Diagnostic], file: str) -> None:
        self.sink = sink
        self.file = file
        self.failed = False
        # The name the source declares, once it is known to be valid; set
        # even when other keys are wrong, so that references to it resolve.
        self.declared_name: str | None = None
        self.errors: list[Diagnostic] = []  # this source's own, in order
        self._error_keys: set[str] = set()
        # (drop-in file, its dotted keys): a problem with a key the drop-in
        # set is reported against the drop-in (dynamodctl edit shows it).
        self.dropin: tuple[str, frozenset[str]] | None = None

    def _file_of(self, key: str) -> str:
        if self.dropin is None or not key:
            return self.file
        src, keys = self.dropin
        parts = key.split(".")
        if any(".".join(parts[:i]) in keys for i in range(1, len(parts) + 1)):
            return src
        return self.file

    def error(self, key: str, message: str, *, suggest: tuple[str, Iterable[str]] | None = None,
              line: int | None = None) -> None:
        self.failed = True
        # One error per key: the value checks of dynamod.config.source and
        # the table's own would otherwise both report one bad value.
        if key in self._error_keys:
            return
        if key:
            self._error_keys.add(key)
        if len(self.errors) >= MAX_ERRORS_PER_SOURCE:
            # A file of 100,000 unknown keys must not take minutes (each
            # suggestion runs difflib) nor print 100,000 lines.
            if len(self.errors) == MAX_ERRORS_PER_SOURCE:
                self._add(Diagnostic(self.file, "", "more errors in this file are not shown"))
            return
        self._add(Diagnostic(self._file_of(key), key, message + _suggestion(suggest), line=line))

    def _add(self, diag: Diagnostic) -> None:
        self.errors.append(diag)
        self.sink.append(diag)

    def warning(self, key: str, message: str) -> None:
        self.sink.append(Diagnostic(self._file_of(key), key, message, "warning"))


def _suggestion(suggest: tuple[str, Iterable[str]] | None) -> str:
    if not suggest:
        return ""
    import difflib  # only on the error path

    wrong, candidates = suggest
    close = difflib.get_close_matches(wrong.replace("_", "-"), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_MISSING = object()


class Table:
    """One TOML table of one source."""

    def __init__(self, rep: Reporter, path: str, data: dict[str, Any]) -> None:
        self.rep = rep
        self.path = path  # dotted name of this table, "" for the document
        self.data = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        """The dotted name of ``name`` in this table."""
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> None:
        self.rep.error(self.key(name), message)

    def get(self, name: str) -> Any:
        """The raw value, or None when absent."""
        self.used.add(name)
        return self.data.get(name)

    def _take(self, name: str, required: bool) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                self.error(name, "missing required key")
            return _MISSING
        return self.data[name]

    def rest(self) -> list[str]:
        """Keys not asked for yet, in file order; they count as handled."""
        keys = [k for k in self.data if k not in self.used]
        self.used.update(keys)
        return keys

    def finish(self) -> None:
        """Report every key nobody asked for."""
        known = sorted(self.used)
        for key in self.rest():
            self.rep.error(self.key(key), "unknown key", suggest=(key, known))

    # -- typed getters: each returns the default after reporting a problem --

    def table(self, name: str, *, required: bool = False) -> Table | None:
        value = self._take(name, False)
        if value is _MISSING:
            if required:
                self.rep.error(self.key(name), f"missing required table [{self.key(name)}]")
            return None
        if not isinstance(value, dict):
            self.error(name, f"expected a table, got {type_name(value)}")
            return None
        return Table(self.rep, self.key(name), value)

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._take(name, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            self.error(name, f"expected a string, got {type_name(value)}")
            return default
        return value

    def abs_path(self, name: str) -> str | None:
        """An absolute path."""
        value = self.string(name)
        if value is not None and not value.startswith("/"):
            self.error(name, f"must be an absolute path, got {value!r}")
            return None
        return value

    def ident(self, name: str) -> str | None:
        """A user or group: a name, or a numeric id (kept as its decimal string)."""
        value = self._take(name, False)
        if value is _MISSING:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                self.error(name, f"must not be negative, got {value}")
                return None
            return str(value)
        if not isinstance(value, str):
            self.error(name, f"expected a string or an integer id, got {type_name(value)}")
            return None
        return self._ident_name(name, value)

    def _ident_name(self, key: str, value: str) -> str | None:
        if not value:
            self.error(key, "must not be empty")
            return None
        # ASCII only: the service manager reads an all-digit name as an id,
        # and "١٢".isdigit() is true too; no spaces or ':' (passwd syntax).
        if not IDENT_RE.fullmatch(value):
            self.error(key, f"invalid user or group name {value!r} (ASCII letters, digits "
                       "and . _ - $, or a numeric id)")
            return None
        return value

    def idents(self, name: str) -> tuple[str, ...]:
        """An array of user or group names or numeric ids."""
        values = self.strings(name, allow_int=True) or ()
        out = [v for i, v in enumerate(values) if self._ident_name(f"{name}[{i}]", v) is not None]
        return tuple(out) if len(out) == len(values) else ()

    def boolean(self, name: str, default: bool) -> bool:
        value = self._take(name, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.error(name, f"expected a boolean (true or false), got {type_name(value)}")
            return default
        return value

    def integer(self, name: str, default: int, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        value = self._take(name, False)
        if value is _MISSING:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.error(name, f"expected an integer, got {type_name(value)}")
            return default
        if minimum is not None and value < minimum:
            self.error(name, f"must be at least {minimum}, got {_short_int(value)}")
            return default
        if maximum is not None and value > maximum:
            self.error(name, f"must be at most {maximum}, got {_short_int(value)}")
            return default
        return value

    def duration(self, name: str, default: float, *, positive: bool = False) -> float:
        value = self._take(name, False)
        if value is _MISSING:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.error(name, str(exc))
            return default
        if positive and seconds <= 0:
            self.error(name, f"must be greater than zero, got {value!r}")
            return default
        return seconds

    def signal(self, name: str, default: int) -> int:
        value = self._take(name, False)
        if value is _MISSING:
            return default
        try:
            return parse_signal(value)
        except ValueError as exc:
            self.error(name, str(exc))
            return default

    def choice(self, name: str, choices: Iterable[str], default: str) -> str:
        choices = tuple(choices)
        value = self.string(name)
        if value is None:
            return default
        if value not in choices:
            self.error(name, f"invalid value {value!r} (expected one of: {', '.join(choices)})")
            return default
        return value

    def strings(self, name: str, *, required: bool = False, nonempty: bool = False,
                allow_int: bool = False) -> tuple[str, ...] | None:
        """An array of strings (of strings or integers with ``allow_int``,
        the integers kept as decimal strings). ``nonempty`` also requires a
        non-empty first element: for command lines, the program."""
        value = self._take(name, required)
        if value is _MISSING:
            return None
        if not isinstance(value, list):
            self.error(name, f"expected an array of strings, got {type_name(value)}")
            return None
        out: list[str] = []
        ok = True
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            elif allow_int and isinstance(item, int) and not isinstance(item, bool) and item >= 0:
                out.append(str(item))
            else:
                self.error(f"{name}[{i}]", f"expected a string, got {type_name(item)}")
                ok = False
        if nonempty and not out and ok:
            self.error(name, "must not be empty")
            return None
        if nonempty and out and not out[0]:
            self.error(f"{name}[0]", "the program must not be empty")
            return None
        return tuple(out) if ok else None


def _short_int(value: int) -> str:
    # TOML integers reach 4,300 digits: do not quote all of them.
    return str(value) if -(10**40) < value < 10**40 else f"a {len(str(abs(value)))}-digit number"


def check_name(table: Table, key: str, name: str) -> bool:
    """Service and supervisor names appear in file names, messages and
    command lines: keep them to a safe character set."""
    if NAME_RE.fullmatch(name):
        return True
    table.error(
        key,
        f"invalid name {name!r} (use letters, digits and _ . @ -, starting with a letter or digit)",
    )
    return False
