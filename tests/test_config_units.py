"""Durations, sizes and signals as written in service files."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamod.config.units import (
    MAX_DURATION,
    MAX_SIZE,
    format_duration,
    format_signal,
    format_size,
    parse_duration,
    parse_signal,
    parse_size,
    type_name,
)

# -- durations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("250us", 0.00025),
        ("5sec", 5.0),
        ("3min", 180.0),
        ("1d", 86400.0),
        ("1m30s", 90.0),
        ("1h 30m", 5400.0),
        (" 10 s ", 10.0),
        ("10", 10.0),
        ("0.25", 0.25),
        (10, 10.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_duration_good(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad",
    ["fast", "", "  ", "10x", "s", "-1s", "1e3s", "1.2.3s", "10S", "ms10", "1s fast"],
)
def test_duration_bad_strings(bad: str) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*\(examples: 500ms, 10s, 2m\)"):
        parse_duration(bad)


@pytest.mark.parametrize(("bad", "what"), [(True, "boolean"), ([1], "array"), ({}, "table")])
def test_duration_wrong_type(bad: object, what: str) -> None:
    with pytest.raises(ValueError, match=f"got {what}"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [-1, -0.5, float("inf"), float("nan"), 10**400])
def test_duration_bad_numbers(bad: float) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    "big", ["9" * 400 + "s", "9" * 400, "1" + "0" * 5000, 1e308, 10**400, "366d", "8761h",
            MAX_DURATION + 1, "365d 1s", "30000000s 2000000s"],
)
def test_duration_maximum(big: object) -> None:
    """Nothing above a year passes: a 400-digit duration used to become +inf
    and raise OverflowError in the service manager's timers."""
    with pytest.raises(ValueError, match=r"is too long \(at most 365d\)") as info:
        parse_duration(big)
    assert len(str(info.value)) < 100  # the value is cut short in the message


def test_duration_maximum_is_allowed() -> None:
    assert parse_duration("365d") == MAX_DURATION == parse_duration(MAX_DURATION)


@pytest.mark.parametrize(
    "digits", ["\u0661\u0660s", "\u0661\u0660", "\uff11\uff10s", "1\u00a0s", "\u0967ms", "1\u2003s"]
)
def test_duration_only_ascii(digits: str) -> None:
    """Arabic-Indic, full-width and Devanagari digits and Unicode spaces are
    numbers to Python's float() and \\d, not to a config."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(digits)


@given(st.integers(min_value=0, max_value=MAX_DURATION * 1000))
def test_duration_ms_roundtrip(ms: int) -> None:
    assert parse_duration(f"{ms}ms") == ms / 1000


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["s", "m", "h", "d"]))
def test_duration_whole_units(n: int, unit: str) -> None:
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if n * factor <= MAX_DURATION:
        assert parse_duration(f"{n}{unit}") == n * factor
    else:
        with pytest.raises(ValueError, match=r"is too long \(at most 365d\)"):
            parse_duration(f"{n}{unit}")


@given(st.integers(min_value=0, max_value=MAX_DURATION * 1000))
def test_format_duration_roundtrip(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=MAX_DURATION, allow_nan=False))
def test_format_duration_roundtrip_floats(seconds: float) -> None:
    if seconds and seconds < 1e-4:
        return  # below 100us the short form is approximate by design
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "500ms"), (0.007, "7ms"), (1.5, "1.5s"), (0, "0s"), (90, "90s"), (120, "2m"),
     (7200, "2h"), (86400, "1d")],
)
def test_format_duration_examples(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# -- sizes -------------------------------------------------------------------

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * M),
        ("2G", 2 * G),
        ("1536M", 1536 * M),
        ("64K", 64 * K),
        ("1T", T),
        ("1.5G", 1536 * M),
        ("512m", 512 * M),
        ("512MiB", 512 * M),
        ("512MB", 512 * M),
        ("100B", 100),
        ("4096", 4096),
        (0, 0),
        (4096, 4096),
    ],
)
def test_size_good(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "", "12X", "-5M", "0.5", "1..5G", "M", "5 M B"])
def test_size_bad(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(bad)


@pytest.mark.parametrize(("bad", "message"), [(-1, "negative"), (1.5, "got float"), (True, "got boolean")])
def test_size_bad_values(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(bad)


@pytest.mark.parametrize("word", ["infinity", "max", "MAX", "Infinity"])
def test_size_unlimited_only_when_allowed(word: str) -> None:
    assert parse_size(word, allow_infinity=True) is None
    with pytest.raises(ValueError, match="not allowed here"):
        parse_size(word)


@given(st.integers(min_value=0, max_value=2**62), st.sampled_from(["", "K", "M", "G", "T"]))
def test_size_units_multiply(n: int, unit: str) -> None:
    factor = {"": 1, "K": K, "M": M, "G": G, "T": T}[unit]
    if n * factor <= MAX_SIZE:
        assert parse_size(f"{n}{unit}") == n * factor
    else:
        with pytest.raises(ValueError, match="is too large"):
            parse_size(f"{n}{unit}")


@pytest.mark.parametrize("big", ["8E", "9" * 5000, "9" * 30 + "K", 2**63, 10**400, "7.99999999999999999999E"])
def test_size_maximum(big: object) -> None:
    with pytest.raises(ValueError, match=r"too large|too many decimals") as info:
        parse_size(big)
    assert len(str(info.value)) < 120


def test_size_maximum_is_allowed() -> None:
    assert parse_size(MAX_SIZE) == MAX_SIZE == parse_size(str(MAX_SIZE))
    assert parse_size("7E") == 7 * 1024**6
    assert parse_size("0000000000000000000000000000064K") == 64 * K


@pytest.mark.parametrize("bad", ["\u0665\u0661\u0662M", "\uff15\uff11\uff12M", "512\u212a", "1\u00a0G"])
def test_size_only_ascii(bad: str) -> None:
    """Arabic-Indic and full-width digits, the Kelvin sign (which matches
    "k" in a case-insensitive Unicode regex) and a no-break space."""
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(bad)


@given(st.integers(min_value=0, max_value=2**62))
def test_format_size_roundtrip(n: int) -> None:
    assert parse_size(format_size(n)) == n


def test_format_size_examples() -> None:
    assert format_size(512 * M) == "512M"
    assert format_size(1536 * M) == "1536M"
    assert format_size(1000) == "1000"
    assert format_size(None) == "infinity"


# -- signals -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("SIGTERM", signal.SIGTERM),
        ("TERM", signal.SIGTERM),
        ("term", signal.SIGTERM),
        ("sigterm", signal.SIGTERM),
        ("SIGHUP", signal.SIGHUP),
        ("SIGQUIT", signal.SIGQUIT),
        ("KILL", signal.SIGKILL),
        ("USR1", signal.SIGUSR1),
        ("15", 15),
        (9, 9),
        ("SIGRTMIN", signal.SIGRTMIN),
        ("SIGRTMIN+3", signal.SIGRTMIN + 3),
        ("RTMAX-1", signal.SIGRTMAX - 1),
    ],
)
def test_signal_good(text: object, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize(
    "bad", ["SIGFOO", "", "SIG", "SIG_DFL", "TERM!", "SIGRTMAX+1", "RTMIN-1", 0, -1, 65, 1000, "0"]
)
def test_signal_bad(bad: object) -> None:
    with pytest.raises(ValueError, match="signal"):
        parse_signal(bad)


@pytest.mark.parametrize("bad", ["\u0661\u0665", "\uff11\uff15", "\u017figterm", "9" * 5000, "SIGRTMIN+" + "9" * 5000])
def test_signal_only_ascii(bad: str) -> None:
    """Arabic-Indic "15".isdigit() is true and int() reads it; the long s
    (U+017F) upper-cases to "S"."""
    with pytest.raises(ValueError, match="signal"):
        parse_signal(bad)


@pytest.mark.parametrize("bad", [True, 15.0, ["TERM"]])
def test_signal_wrong_type(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a signal"):
        parse_signal(bad)


@given(st.sampled_from(sorted(int(s) for s in signal.valid_signals())))
def test_signal_number_name_roundtrip(number: int) -> None:
    assert parse_signal(number) == number
    assert parse_signal(format_signal(number)) == number


@given(st.sampled_from([s.name for s in signal.Signals]))
def test_signal_name_forms(name: str) -> None:
    number = int(signal.Signals[name])
    assert parse_signal(name) == number
    assert parse_signal(name[3:]) == number
    assert parse_signal(name[3:].lower()) == number


def test_type_names() -> None:
    assert [type_name(v) for v in ("", 1, 1.0, True, [], {})] == [
        "string", "integer", "float", "boolean", "array", "table",
    ]
