"""Parsing the value syntaxes of service files: durations, sizes, signals.

Every parser raises :class:`ValueError` whose message is ready to be shown
after ``file: key:``; it never mentions the key itself. TOML booleans are
rejected wherever a number is expected (``bool`` is an ``int`` in Python, but
``delay = true`` is a mistake, not one second).
"""

from __future__ import annotations

import math
import re
import signal
from datetime import date, datetime, time
from typing import Literal, overload

DURATION_EXAMPLES = "examples: 500ms, 10s, 2m"
SIZE_EXAMPLES = "examples: 64K, 512M, 2G, or a number of bytes"
SIGNAL_EXAMPLES = "examples: SIGTERM, TERM, 15"

# Longer unit names first so that "ms" and "min" are not read as "m".
_DURATION_UNITS: dict[str, tuple[int, int]] = {
    # unit: (multiplier, divisor); dividing keeps "N ms" exactly N / 1000.
    "us": (1, 1_000_000),
    "ms": (1, 1000),
    "s": (1, 1),
    "sec": (1, 1),
    "min": (60, 1),
    "m": (60, 1),
    "h": (3600, 1),
    "d": (86400, 1),
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(rf"\s*({_NUMBER})\s*(us|ms|sec|s|min|m|h|d)")
_PLAIN_NUMBER = re.compile(rf"\s*{_NUMBER}\s*")

_SIZE_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_SIZE = re.compile(r"\s*(\d+)(?:\.(\d+))?\s*([KMGTPE]?)(?:i?B)?\s*", re.IGNORECASE)
_UNLIMITED_WORDS = ("infinity", "max")

_RT_SIGNAL = re.compile(r"RTM(IN|AX)(?:([+-])(\d+))?")


def type_name(value: object) -> str:
    """The TOML name of a parsed value's type, for "expected X, got Y"."""
    # bool before int: bool is a subclass of int.
    for cls, name in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
        (datetime, "datetime"),
        (date, "date"),
        (time, "time"),
    ):
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"10s"``, ``"2m"``, ``"1h"``, ``"1.5s"``,
    ``"1m30s"`` or a plain number of seconds (TOML number or numeric string).

    Units: us, ms, s (sec), m (min), h, d. Negative and non-finite values are
    rejected."""
    if _is_number(value):
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except OverflowError:
            raise ValueError(f"duration {value!r} is too large") from None
        if not math.isfinite(seconds):
            raise ValueError(f"invalid duration {value!r} ({DURATION_EXAMPLES})")
        if seconds < 0:
            raise ValueError(f"duration must not be negative, got {value!r}")
        return seconds
    if not isinstance(value, str):
        raise ValueError(
            f"expected a duration (a string such as '10s' or a number of seconds), "
            f"got {type_name(value)}"
        )
    if _PLAIN_NUMBER.fullmatch(value):
        return float(value)
    pos, total, text = 0, 0.0, value.rstrip()
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise ValueError(f"invalid duration {value!r} ({DURATION_EXAMPLES})")
        mul, div = _DURATION_UNITS[m.group(2)]
        total += float(m.group(1)) * mul / div
        pos = m.end()
    if pos == 0 or not math.isfinite(total):
        raise ValueError(f"invalid duration {value!r} ({DURATION_EXAMPLES})")
    return total


def format_duration(seconds: float) -> str:
    """A short human form that :func:`parse_duration` reads back exactly:
    ``0.5`` → ``"500ms"``, ``1.5`` → ``"1.5s"``, ``90`` → ``"90s"``,
    ``120`` → ``"2m"``, ``7200`` → ``"2h"``."""
    if seconds == int(seconds):
        n = int(seconds)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if n and n % size == 0:
                return f"{n // size}{unit}"
        return f"{n}s"
    if seconds < 1:
        ms = round(seconds * 1000)
        if ms / 1000 == seconds:
            return f"{ms}ms"
    text = repr(float(seconds))
    if "e" not in text and "n" not in text:  # not 1e-07, inf or nan
        return f"{text}s"
    return f"{seconds * 1000:.6f}ms"  # too small to matter: approximate


# ---------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------


@overload
def parse_size(value: object, *, allow_infinity: Literal[False] = False) -> int: ...
@overload
def parse_size(value: object, *, allow_infinity: bool) -> int | None: ...


def parse_size(value: object, *, allow_infinity: bool = False) -> int | None:
    """Bytes from ``"512M"``, ``"2G"``, ``"1536M"``, ``"64K"``, ``"1T"``, ``"1.5G"``
    or a plain non-negative integer of bytes.

    Suffixes are binary (K = 1024) and case-insensitive, optionally followed
    by ``B`` or ``iB`` (``512MiB``). When ``allow_infinity`` is true,
    ``"infinity"`` and ``"max"`` mean no limit and return ``None``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        what = "a size (a string such as '512M' or a number of bytes"
        what += ", or 'infinity')" if allow_infinity else ")"
        raise ValueError(f"expected {what}, got {type_name(value)}")
    if value.strip().lower() in _UNLIMITED_WORDS:
        if allow_infinity:
            return None
        raise ValueError(f"{value!r} is not allowed here: a limit is required ({SIZE_EXAMPLES})")
    m = _SIZE.fullmatch(value)
    if not m or (m.group(2) is not None and not m.group(3)):
        # A fraction of a byte means nothing; fractions need a unit.
        extra = ", 'infinity'" if allow_infinity else ""
        raise ValueError(f"invalid size {value!r} ({SIZE_EXAMPLES}{extra})")
    whole, frac, unit = m.group(1), m.group(2) or "", m.group(3).upper()
    mul = 1024 ** _SIZE_UNITS[unit]
    # Integer arithmetic: "1.5G" must be exactly 1610612736, not a float.
    return int(whole) * mul + (int(frac or "0") * mul) // (10 ** len(frac))


def format_size(size: int | None) -> str:
    """The shortest exact form (``536870912`` → ``"512M"``); None → ``"infinity"``."""
    if size is None:
        return "infinity"
    for unit in ("E", "P", "T", "G", "M", "K"):
        mul = 1024 ** _SIZE_UNITS[unit]
        if size and size % mul == 0:
            return f"{size // mul}{unit}"
    return str(size)


# ---------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------


def parse_signal(value: object) -> int:
    """A signal number from ``"SIGTERM"``, ``"TERM"``, ``"term"``, ``15``,
    ``"15"`` or ``"SIGRTMIN+3"``. Unknown names and numbers are rejected."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value in _valid_numbers():
            return value
        raise ValueError(f"unknown signal number {value} ({SIGNAL_EXAMPLES})")
    if not isinstance(value, str):
        raise ValueError(
            f"expected a signal (a name such as 'SIGTERM' or a number), got {type_name(value)}"
        )
    text = value.strip()
    if text.isdigit():
        return parse_signal(int(text))
    name = text.upper()
    if name.startswith("SIG"):
        name = name[3:]
    rt = _RT_SIGNAL.fullmatch(name)
    if rt:
        base = signal.SIGRTMIN if rt.group(1) == "IN" else signal.SIGRTMAX
        offset = int(rt.group(3) or 0) * (-1 if rt.group(2) == "-" else 1)
        num = int(base) + offset
        if signal.SIGRTMIN <= num <= signal.SIGRTMAX:
            return num
        raise ValueError(f"real-time signal {value!r} is out of range")
    sig = getattr(signal.Signals, "SIG" + name, None) if name.isalnum() else None
    if sig is None:
        raise ValueError(f"unknown signal {value!r} ({SIGNAL_EXAMPLES})")
    return int(sig)


def format_signal(number: int) -> str:
    """``15`` → ``"SIGTERM"``; real-time signals as ``"SIGRTMIN+N"``."""
    if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
        return "SIGRTMIN" if number == signal.SIGRTMIN else f"SIGRTMIN+{number - signal.SIGRTMIN}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _valid_numbers() -> set[int]:
    # valid_signals() holds Signals members and bare ints for real-time ones.
    return {int(s) for s in signal.valid_signals()}
