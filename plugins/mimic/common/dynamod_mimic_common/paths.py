"""Object-path labels as the systemd clients compute them.

Clients build object paths themselves (``systemctl status foo.service`` goes
straight to ``/org/freedesktop/systemd1/unit/foo_2eservice``), so a mimic must
escape exactly the same way: every byte outside ``[A-Za-z0-9]`` becomes
``_xx`` (lower-case hex), a leading digit is escaped too, and the empty
string is ``_``.
"""

from __future__ import annotations

_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_HEX = frozenset("0123456789abcdef")


def escape_label(name: str) -> str:
    """One object-path element for ``name`` (any string, UTF-8 encoded)."""
    raw = name.encode()
    if not raw:
        return "_"
    out = []
    for i, byte in enumerate(raw):
        if byte in _ALNUM and not (i == 0 and 0x30 <= byte <= 0x39):
            out.append(chr(byte))
        else:
            out.append(f"_{byte:02x}")
    return "".join(out)


def unescape_label(label: str) -> str | None:
    """The name ``label`` stands for, or None if ``label`` is not a valid
    escaped element (so a resolver can answer "no such object" instead of
    guessing)."""
    if label == "_":
        return ""
    raw = bytearray()
    i = 0
    while i < len(label):
        ch = label[i]
        if ch == "_":
            pair = label[i + 1:i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                return None
            raw.append(int(pair, 16))
            i += 3
        elif ord(ch) < 128 and ord(ch) in _ALNUM:
            raw.append(ord(ch))
            i += 1
        else:
            return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def child_path(prefix: str, name: str) -> str:
    """``prefix`` + ``/`` + the escaped ``name``."""
    return f"{prefix.rstrip('/')}/{escape_label(name)}"
