"""Parsing the value syntaxes of service files: durations, sizes, signals.

Every parser raises :class:`ValueError` whose message is ready to be shown
after ``file: key:``; it never mentions the key itself. TOML booleans are
rejected wherever a number is expected (``bool`` is an ``int`` in Python, but
``delay = true`` is a mistake, not one second).

Only ASCII digits, spaces and tabs count here (explicit ``[0-9]`` classes,
no ``str.isdigit``): Python's ``\\d``, ``float()`` and ``int()`` also read
Arabic-Indic or full-width digits, which a config must not pass for a
number. Every value has a maximum (:data:`MAX_DURATION`, :data:`MAX_SIZE`),
so nothing accepted here can overflow where the service manager uses it.
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

# One year: longer than any timeout or delay means anything, short enough
# that deadlines (monotonic time + duration) stay exact floats and
# asyncio's timers never overflow.
MAX_DURATION = 365 * 86400
# Sizes are written to kernel interfaces and sent over the control socket
# as 64-bit signed integers.
MAX_SIZE = 2**63 - 1
# Digits kept of a size's fraction ("1.5G"): more than any unit needs.
_MAX_FRACTION_DIGITS = 18

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
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION_PART = re.compile(rf"[ \t]*({_NUMBER})[ \t]*(us|ms|sec|s|min|m|h|d)")
_PLAIN_NUMBER = re.compile(rf"[ \t]*{_NUMBER}[ \t]*")

_SIZE_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_SIZE = re.compile(r"[ \t]*([0-9]+)(?:\.([0-9]+))?[ \t]*([KMGTPE]?)(?:i?B)?[ \t]*", re.IGNORECASE | re.ASCII)
_UNLIMITED_WORDS = ("infinity", "max")

_RT_SIGNAL = re.compile(r"RTM(IN|AX)(?:([+-])([0-9]{1,3}))?")


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

    Units: us, ms, s (sec), m (min), h, d. Negative and non-finite values
    and values above :data:`MAX_DURATION` (365d) are rejected."""
    if _is_number(value):
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except OverflowError:
            seconds = math.inf
        if math.isnan(seconds):
            raise ValueError(f"invalid duration {_quote(value)} ({DURATION_EXAMPLES})")
        if seconds < 0:
            raise ValueError(f"duration must not be negative, got {_quote(value)}")
        return _bounded(seconds, value)
    if not isinstance(value, str):
        raise ValueError(
            f"expected a duration (a string such as '10s' or a number of seconds), "
            f"got {type_name(value)}"
        )
    if _PLAIN_NUMBER.fullmatch(value):
        return _bounded(float(value), value)
    pos, total, text = 0, 0.0, value.rstrip(" \t")
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise ValueError(f"invalid duration {_quote(value)} ({DURATION_EXAMPLES})")
        mul, div = _DURATION_UNITS[m.group(2)]
        total += float(m.group(1)) * mul / div
        pos = m.end()
    if pos == 0:
        raise ValueError(f"invalid duration {_quote(value)} ({DURATION_EXAMPLES})")
    return _bounded(total, value)


def _bounded(seconds: float, value: object) -> float:
    # Also catches inf: "1e400", a 400-digit number, or a sum that overflowed.
    if not seconds <= MAX_DURATION:
        raise ValueError(f"duration {_quote(value)} is too long (at most 365d)")
    return seconds


def _quote(value: object) -> str:
    """``repr(value)``, cut short: the value may be a 4,000-digit number."""
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + "..." + text[-1]


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
            raise ValueError(f"size must not be negative, got {_quote(value)}")
        return _size_bounded(value, value)
    if not isinstance(value, str):
        what = "a size (a string such as '512M' or a number of bytes"
        what += ", or 'infinity')" if allow_infinity else ")"
        raise ValueError(f"expected {what}, got {type_name(value)}")
    if value.strip(" \t").lower() in _UNLIMITED_WORDS:
        if allow_infinity:
            return None
        raise ValueError(f"{_quote(value)} is not allowed here: a limit is required ({SIZE_EXAMPLES})")
    m = _SIZE.fullmatch(value)
    if not m or (m.group(2) is not None and not m.group(3)):
        # A fraction of a byte means nothing; fractions need a unit.
        extra = ", 'infinity'" if allow_infinity else ""
        raise ValueError(f"invalid size {_quote(value)} ({SIZE_EXAMPLES}{extra})")
    whole, frac, unit = m.group(1).lstrip("0"), m.group(2) or "", m.group(3).upper()
    if len(whole) > 20:  # before int(): Python refuses more than 4300 digits
        raise ValueError(f"size {_quote(value)} is too large (at most {MAX_SIZE} bytes)")
    if len(frac) > _MAX_FRACTION_DIGITS:
        raise ValueError(f"size {_quote(value)} has too many decimals")
    mul = 1024 ** _SIZE_UNITS[unit]
    # Integer arithmetic: "1.5G" must be exactly 1610612736, not a float.
    size = int(whole or "0") * mul + (int(frac or "0") * mul) // (10 ** len(frac))
    return _size_bounded(size, value)


def _size_bounded(size: int, value: object) -> int:
    if size > MAX_SIZE:
        raise ValueError(f"size {_quote(value)} is too large (at most {MAX_SIZE} bytes)")
    return size


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
    text = value.strip(" \t")
    if not text.isascii():
        raise ValueError(f"unknown signal {_quote(value)} ({SIGNAL_EXAMPLES})")
    if text.isdigit() and len(text) <= 3:
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
        raise ValueError(f"real-time signal {_quote(value)} is out of range")
    sig = getattr(signal.Signals, "SIG" + name, None) if name.isalnum() else None
    if sig is None:
        raise ValueError(f"unknown signal {_quote(value)} ({SIGNAL_EXAMPLES})")
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
