"""Wait statuses in words (``exited 3``, ``killed by SIGKILL``), without ``os``."""

from __future__ import annotations

import signal


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def describe_status(status: int) -> str:
    """A ``waitpid`` status as ``dynamodctl status`` shows it."""
    low = status & 0x7F
    if low == 0:
        return f"exited {(status >> 8) & 0xFF}"
    if low != 0x7F:
        return f"killed by {signal_name(low)}"
    return f"status {status:#x}"


def exit_code(status: int) -> int:
    """Like ``os.waitstatus_to_exitcode``: the code, or ``-N`` for signal N."""
    low = status & 0x7F
    return (status >> 8) & 0xFF if low == 0 else -low
