"""Reading one config file into plain data, whatever the file holds.

Everything that can go wrong between a directory entry and a parsed TOML
document becomes a :class:`SourceError` with a message for the user (and
the line, where the parser gave one); nothing else ever leaves this module.
That covers what a careless or hostile administrator can put in
``services/``: a FIFO (``open`` would wait for a writer for ever), a
symbolic link to ``/dev/zero`` (reading would never end), a huge file, bytes
that are not UTF-8, nesting deeper than the parser's recursion can take, an
integer of more than 4,300 digits (Python refuses to convert it), and NUL
bytes in strings (``execve`` and ``open`` refuse them later, at a worse
moment).

Limits, documented in docs/config.md:

* only regular files (a symbolic link to one is fine), at most
  :data:`MAX_FILE_SIZE` bytes;
* tables and arrays nested at most :data:`MAX_DEPTH` deep, dotted keys
  and table headers of at most that many parts;
* integers within 64 bits (the TOML specification's range);
* no NUL character in any key or string.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tomllib
from typing import Any

MAX_FILE_SIZE = 1 << 20  # 1 MiB: a service file is a few hundred bytes
MAX_DEPTH = 32
_INT64 = (-(2**63), 2**63 - 1)
# A file with problems in every value must not produce a million lines.
MAX_VALUE_PROBLEMS = 20

_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)")
# tomllib's time and memory grow with the square of a dotted key's length
# (a 100,000-part key ate all memory): such keys are refused before it sees
# them. A key starts a line (or a [table] header) or follows "{" or "," in
# an inline table; possessive quantifiers keep the scan linear.
_PART = r"""(?:[A-Za-z0-9_-]++|"(?:[^"\\\n]|\\.)*+"|'[^'\n]*+')"""
_LONG_KEY = re.compile(rf"(?:^|[{{,\[])[ \t]*+(?:{_PART}[ \t]*+\.[ \t]*+){{{MAX_DEPTH}}}", re.M)
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class SourceError(Exception):
    """The file cannot be used at all; ``message`` says why."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def read_text(path: str) -> str:
    """The contents of a regular file of at most :data:`MAX_FILE_SIZE`
    bytes, decoded as UTF-8 (a leading byte order mark is dropped)."""
    try:
        st = os.stat(path)  # follows symbolic links, opens nothing
    except OSError as exc:
        raise SourceError(_stat_problem(path, exc)) from None
    _require_regular(st)
    try:
        # O_NONBLOCK: should the file have been replaced by a FIFO since the
        # stat, open returns at once instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise SourceError(f"cannot read file: {exc.strerror or exc}") from None
    try:
        _require_regular(os.fstat(fd))
        raw = _read_bounded(fd)
    finally:
        os.close(fd)
    return decode(raw)


def _stat_problem(path: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError) and os.path.islink(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"broken symbolic link (to {target!r})"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"cannot read file: {exc.strerror or exc}"


def _require_regular(st: os.stat_result) -> None:
    if stat.S_ISREG(st.st_mode):
        if st.st_size > MAX_FILE_SIZE:
            raise SourceError(f"file is too large ({st.st_size} bytes; at most {MAX_FILE_SIZE})")
        return
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    raise SourceError(f"is {kind}, not a regular file (only regular files are read)")


def _read_bounded(fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:
            raise SourceError(f"cannot read file: {exc.strerror or exc}") from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_FILE_SIZE:  # it grew after the fstat
            raise SourceError(f"file is too large (more than {MAX_FILE_SIZE} bytes)")
        chunks.append(chunk)


def decode(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SourceError(
            f"file is not UTF-8: {exc.reason} at byte {exc.start} (line {line})", line
        ) from None
    return text.removeprefix("\ufeff")


def parse(text: str) -> dict[str, Any]:
    """A TOML document; every way the parser can fail is a SourceError."""
    if text.count(".") >= MAX_DEPTH and (m := _LONG_KEY.search(text)):
        line = text.count("\n", 0, m.start()) + 1
        raise SourceError(
            f"invalid TOML: a dotted key of more than {MAX_DEPTH} parts (line {line})", line
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _AT_LINE.search(str(exc))
        line = int(m.group(1)) if m else None
        if line is None and "(at end of document)" in str(exc):
            line = text.count("\n") + 1
        raise SourceError(f"invalid TOML: {exc}", line) from None
    except RecursionError:
        raise SourceError(f"invalid TOML: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:
        # int() refusing more than 4,300 digits (sys.get_int_max_str_digits).
        if "digits" in str(exc):
            raise SourceError(
                "invalid TOML: an integer has too many digits (integers are 64-bit)"
            ) from None
        raise SourceError(f"invalid TOML: {exc}") from None
    except MemoryError:
        raise SourceError("invalid TOML: too large to parse") from None
    except Exception as exc:  # the parser's own bug: still only this file's problem
        raise SourceError(f"cannot parse: {type(exc).__name__}: {exc}") from None


def value_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """``(dotted key, message)`` for every NUL character, integer beyond 64
    bits and nesting beyond :data:`MAX_DEPTH` in a parsed document, at most
    :data:`MAX_VALUE_PROBLEMS` of them (then one that says how many more).
    Iterative: the document may be as deep as the parser allowed."""
    problems: list[tuple[str, str]] = []
    more = 0
    stack: list[tuple[str, Any, int]] = [("", data, 0)]

    def report(key: str, message: str) -> None:
        nonlocal more
        if len(problems) < MAX_VALUE_PROBLEMS:
            problems.append((key, message))
        else:
            more += 1

    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, str):
            if "\0" in value:
                report(path, "contains a NUL character (\\u0000), which no string may hold")
        elif isinstance(value, int) and not isinstance(value, bool):
            if not _INT64[0] <= value <= _INT64[1]:
                report(path, "integer out of range (integers are 64-bit)")
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                report(path, f"nested too deeply (at most {MAX_DEPTH} levels)")
                continue
            if isinstance(value, dict):
                for k in reversed(list(value)):
                    child = f"{path}.{k}" if path else k
                    if "\0" in k:
                        report(child, "the key contains a NUL character (\\u0000)")
                    stack.append((child, value[k], depth + 1))
            else:
                for i in range(len(value) - 1, -1, -1):
                    stack.append((f"{path}[{i}]", value[i], depth + 1))
    if more:
        problems.append(("", f"and {more} more problems of this kind"))
    return problems
