"""Which line of a TOML file a dotted key is on.

``tomllib`` keeps no positions, so diagnostics (``restart.delay``,
``service.exec[0]``, ``namespace.bind-mounts[1].source``) are placed by a
small scanner that walks the text of a document the parser already
accepted: table headers, ``key = value`` lines (dotted keys included),
and the elements and keys of arrays and inline tables, multi-line ones
too. It is used only on the error path, and it never raises: anything it
cannot follow ends the scan with what it found so far.
"""

from __future__ import annotations

import re

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}
_INDEX = re.compile(r"\[\d+\]$")
# Deeper documents were refused anyway; this keeps the scanner's own
# recursion far from Python's limit.
_MAX_NESTING = 40


class _Stop(Exception):
    pass


class KeyLines:
    """The line of each key of one document."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.explicit: dict[str, int] = {}
        self.implicit: dict[str, int] = {}  # tables created by a dotted key or header
        self._counts: dict[str, int] = {}
        try:
            self._document()
        except (_Stop, IndexError, ValueError):
            pass

    def line_of(self, key: str) -> int | None:
        """The line of ``key``, else of the closest enclosing key or table
        written in the file (where a missing key belongs), else None."""
        while key:
            for found in (self.explicit, self.implicit):
                if key in found:
                    return found[key]
            m = _INDEX.search(key)
            key = key[: m.start()] if m else key.rpartition(".")[0]
        return None

    # -- scanning -----------------------------------------------------------

    def _record(self, path: str, line: int) -> None:
        self.explicit.setdefault(path, line)

    def _document(self) -> None:
        text, table = self.text, ""
        while self.pos < len(text):
            start = self.pos
            self._blank(newlines=True)
            if self.pos >= len(text):
                return
            if text[self.pos] == "[":
                table = self._header()
            else:
                parts = self._key()
                if not parts or not self._eat("="):
                    self._skip_line()
                else:
                    path = self._join(table, parts)
                    self._value(path, 0)
            if self.pos == start:  # never loop without progress
                self.pos += 1

    def _header(self) -> str:
        text = self.text
        array = text.startswith("[[", self.pos)
        self.pos += 2 if array else 1
        parts = self._key()
        self._blank()
        self.pos += 2 if array else 1
        path = self._join("", parts)  # records the tables it implies
        if array:
            index = self._counts.get(path, 0)
            self._counts[path] = index + 1
            path = f"{path}[{index}]"
        self._record(path, self.line)
        return path

    def _join(self, table: str, parts: list[str]) -> str:
        if len(parts) > _MAX_NESTING:
            raise _Stop
        path = table
        for i, part in enumerate(parts):
            path = f"{path}.{part}" if path else part
            if i < len(parts) - 1:
                self.implicit.setdefault(path, self.line)
        return path

    def _key(self) -> list[str]:
        text, parts = self.text, []
        while True:
            self._blank()
            if self.pos >= len(text):
                return parts
            c = text[self.pos]
            if c == '"':
                parts.append(self._basic_string())
            elif c == "'":
                end = text.index("'", self.pos + 1)
                parts.append(text[self.pos + 1 : end])
                self.pos = end + 1
            else:
                m = _BARE.match(text, self.pos)
                if not m:
                    return parts
                parts.append(m.group())
                self.pos = m.end()
            self._blank()
            if not self._eat("."):
                return parts

    def _value(self, path: str, depth: int) -> None:
        if depth > _MAX_NESTING:
            raise _Stop
        self._record(path, self.line)
        self._blank()
        text = self.text
        c = text[self.pos] if self.pos < len(text) else ""
        if text.startswith('"""', self.pos) or text.startswith("'''", self.pos):
            self._multiline_string()
        elif c == '"':
            self._basic_string()
        elif c == "'":
            self.pos = text.index("'", self.pos + 1) + 1
        elif c == "[":
            self.pos += 1
            index = 0
            while True:
                self._blank(newlines=True)
                if self._eat("]"):
                    return
                self._value(f"{path}[{index}]", depth + 1)
                self._blank(newlines=True)
                if self._eat(","):
                    index += 1
                elif not self._eat("]"):
                    raise _Stop
                else:
                    return
        elif c == "{":
            self.pos += 1
            while True:
                self._blank()
                if self._eat("}"):
                    return
                parts = self._key()
                if not parts or not self._eat("="):
                    raise _Stop
                self._value(self._join(path, parts), depth + 1)
                self._blank()
                if not self._eat(","):
                    if not self._eat("}"):
                        raise _Stop
                    return
        else:
            m = re.compile(r"[^,\]}#\r\n]*").match(text, self.pos)
            self.pos = m.end() if m else self.pos + 1

    def _basic_string(self) -> str:
        text, out = self.text, []
        self.pos += 1
        while True:
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\n":
                raise _Stop
            if c == "\\":
                e = text[self.pos + 1]
                if e in "uU":
                    width = 4 if e == "u" else 8
                    out.append(chr(int(text[self.pos + 2 : self.pos + 2 + width], 16)))
                    self.pos += 2 + width
                    continue
                out.append(_ESCAPES.get(e, e))
                self.pos += 2
                continue
            out.append(c)
            self.pos += 1

    def _multiline_string(self) -> None:
        text = self.text
        quote = text[self.pos : self.pos + 3]
        i = self.pos + 3
        while True:
            if quote == '"""' and text[i] == "\\":
                if text[i + 1] == "\n":
                    self.line += 1
                i += 2
                continue
            if text.startswith(quote, i):
                # Up to two more quotes may belong to the content ("""a"""").
                while text.startswith(quote[0], i + 3):
                    i += 1
                self.pos = i + 3
                return
            if text[i] == "\n":
                self.line += 1
            i += 1

    def _blank(self, newlines: bool = False) -> None:
        """Skip spaces and tabs; with ``newlines``, also line ends and comments."""
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t\r":
                self.pos += 1
            elif c == "#":
                if not newlines:
                    return
                self._skip_line()
            elif c == "\n" and newlines:
                self.pos += 1
                self.line += 1
            else:
                return

    def _skip_line(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def _eat(self, token: str) -> bool:
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False
