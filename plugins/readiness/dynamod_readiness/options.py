"""The detectors' ``[readiness]`` keys: what each type accepts, its
validator, and the helpers that read the keys.

Validators run when the configuration is loaded (``dynamodctl check``) and
report ``(key, message)`` pairs; the detectors read the same, already
validated table at start time through the ``get_*`` helpers, so a value is
interpreted in one place only. They live here, not beside the detectors,
because loading the plugin (every svmgr start, every ``dynamodctl check``)
needs them and no detector: a detector module (and asyncio with it) is
imported when a service of its type first starts.
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


def strip_brackets(host: str) -> str:
    # "[::1]" as written in URLs is accepted for an IPv6 literal.
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


# --- notify

NOTIFY_OPTIONS = frozenset({"watchdog"})


def validate_notify(table: dict[str, Any]) -> Problems:
    problems: Problems = []
    check_duration(table, "watchdog", problems)
    return problems


# --- tcp-port

TCP_OPTIONS = frozenset({"port", "host"})
DEFAULT_HOST = "127.0.0.1"


def validate_tcp(table: dict[str, Any]) -> Problems:
    problems: Problems = []
    port = table.get("port")
    if port is None:
        problems.append(("port", "required for readiness type 'tcp-port'"))
    elif not is_int(port) or not 1 <= port <= 65535:
        problems.append(("port", f"expected a TCP port number (1-65535), got {port!r}"))
    if "host" in table:
        host = table["host"]
        if not isinstance(host, str) or not host.strip():
            problems.append(("host", "expected a host name or an IP address"))
        elif any(c.isspace() for c in host):
            problems.append(("host", f"invalid host {host!r}"))
        elif ":" in host:
            import ipaddress  # only for IPv6 literals

            try:
                ipaddress.IPv6Address(strip_brackets(host))
            except ValueError:
                problems.append(("host", f"invalid IPv6 address {host!r}"))
    return problems


# --- exec

EXEC_OPTIONS = frozenset({"check-exec", "check-timeout", "interval"})


def validate_exec(table: dict[str, Any]) -> Problems:
    problems: Problems = []
    argv = table.get("check-exec")
    if argv is None:
        problems.append(("check-exec", "required for readiness type 'exec'"))
    elif (
        not isinstance(argv, list)
        or not argv
        or not all(isinstance(a, str) for a in argv)
        or not argv[0]
    ):
        problems.append(
            ("check-exec", "expected a non-empty list of strings (program and arguments)")
        )
    check_duration(table, "check-timeout", problems)
    check_duration(table, "interval", problems)
    return problems


# --- fd

FD_OPTIONS = frozenset({"fd"})
DEFAULT_FD = 3
MAX_FD = 1023  # below the usual RLIMIT_NOFILE soft limit of 1024


def validate_fd(table: dict[str, Any]) -> Problems:
    fd = table.get("fd", DEFAULT_FD)
    if not is_int(fd) or not 3 <= fd <= MAX_FD:
        return [
            ("fd", f"expected a descriptor number from 3 to {MAX_FD} (0-2 are stdio), got {fd!r}")
        ]
    return []
