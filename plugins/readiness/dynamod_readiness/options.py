"""Reading the detectors' ``[readiness]`` keys.

Validators run when the configuration is loaded (``dynamodctl check``) and
report ``(key, message)`` pairs; the detectors read the same, already
validated table at start time through the ``get_*`` helpers, so a value is
interpreted in one place only.
"""

from __future__ import annotations

from typing import Any

from dynamod.config.units import parse_duration

Problems = list[tuple[str, str]]


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_duration(
    table: dict[str, Any], key: str, problems: Problems, *, positive: bool = True
) -> None:
    if key not in table:
        return
    try:
        seconds = parse_duration(table[key])
    except ValueError as exc:
        problems.append((key, str(exc)))
        return
    if positive and seconds <= 0:
        problems.append((key, "must be greater than zero"))


def get_duration(table: dict[str, Any], key: str, default: float) -> float:
    return parse_duration(table[key]) if key in table else default
