"""Environment-style files (os-release(5) syntax): machine-info, locale.conf,
vconsole.conf, /etc/default/locale and /etc/default/keyboard.

``KEY=value`` lines, ``#`` comments and blank lines. Values may be bare
(backslash escapes a character), in double quotes (backslash escapes ``\\ " $
` `` and a newline continues the value) or in single quotes (literal). No
expansion. Updating a file keeps its comments, the order of its lines and
the keys we do not manage.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters a value may hold without quotes (shell-safe).
_BARE = re.compile(r"[A-Za-z0-9_.,:/@%+=^-]+")


def _logical_lines(text: str) -> list[str]:
    """Lines, with a double-quoted value that spans newlines joined into one."""
    out: list[str] = []
    pending: str | None = None
    for line in text.split("\n"):
        if pending is not None:
            pending += "\n" + line
            if not _open_quote(pending):
                out.append(pending)
                pending = None
            continue
        if _open_quote(line):
            pending = line
        else:
            out.append(line)
    if pending is not None:
        out.append(pending)
    return out


def _open_quote(line: str) -> bool:
    """Does ``line`` end inside a double or single quote?"""
    if line.lstrip().startswith("#"):
        return False
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote == "'":
            if c == "'":
                quote = ""
        elif quote == '"':
            if c == "\\":
                i += 1
            elif c == '"':
                quote = ""
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote = c
        i += 1
    return bool(quote)


def unquote(raw: str) -> str:
    """The value of the right-hand side ``raw`` of an assignment."""
    out: list[str] = []
    quote = ""
    i = 0
    raw = raw.strip()
    while i < len(raw):
        c = raw[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                out.append(c)
        elif quote == '"':
            if c == '"':
                quote = ""
            elif c == "\\" and i + 1 < len(raw):
                nxt = raw[i + 1]
                i += 1
                if nxt == "\n":
                    pass  # a line continuation
                elif nxt in '\\"$`':
                    out.append(nxt)
                else:
                    out.append("\\" + nxt)
            else:
                out.append(c)
        elif c in "'\"":
            quote = c
        elif c == "\\" and i + 1 < len(raw):
            i += 1
            if raw[i] != "\n":
                out.append(raw[i])
        elif c == "#" and (i == 0 or raw[i - 1].isspace()):
            break  # a trailing comment after a bare value
        elif c.isspace():
            # A bare value ends at unquoted whitespace (as in the shell).
            rest = raw[i:].lstrip()
            if not rest or rest.startswith("#"):
                break
            out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def quote(value: str) -> str:
    """``value`` written so that a shell (and :func:`unquote`) reads it back."""
    if value and _BARE.fullmatch(value):
        return value
    escaped = re.sub(r'([\\"$`])', r"\\\1", value)
    return f'"{escaped}"'


def _split(line: str) -> tuple[str, str] | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    if stripped.startswith("export "):
        stripped = stripped[len("export ") :].lstrip()
    key, sep, raw = stripped.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        return None
    return key, raw


def parse(text: str | None) -> dict[str, str]:
    """The assignments of a file (the last one wins for a repeated key).
    Lines that are not assignments are ignored, as systemd's readers do."""
    result: dict[str, str] = {}
    for line in _logical_lines(text or ""):
        kv = _split(line)
        if kv is not None:
            result[kv[0]] = unquote(kv[1])
    return result


def update(text: str | None, changes: dict[str, str | None], order: list[str] | None = None) -> str:
    """``text`` with the keys of ``changes`` set (a value) or removed (None or
    ""). Existing assignments are rewritten in place, the first occurrence
    only (later repeats are dropped); new keys are appended in ``order``
    (default: the order of ``changes``). Returns "" when nothing but blank
    lines would remain, so the caller can remove the file."""
    lines = _logical_lines(text or "")
    if lines and lines[-1] == "":
        lines.pop()
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        kv = _split(line)
        if kv is None or kv[0] not in changes:
            out.append(line)
            continue
        key = kv[0]
        if key in seen:
            continue
        seen.add(key)
        value = changes[key]
        if value:
            out.append(f"{key}={quote(value)}")
    for key in order or list(changes):
        value = changes.get(key)
        if key not in seen and value:
            out.append(f"{key}={quote(value)}")
    if not any(line.strip() for line in out):
        return ""
    return "\n".join(out) + "\n"
