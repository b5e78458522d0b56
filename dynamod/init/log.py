"""Where PID 1 writes: /dev/kmsg on a real boot (the kernel log survives a
broken console), else stderr. Never raises."""

from __future__ import annotations

import os
import sys
import time

_kmsg_fd = -1
_stderr = True


def use_kmsg() -> None:
    global _kmsg_fd
    try:
        _kmsg_fd = os.open("/dev/kmsg", os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        _kmsg_fd = -1


def log(message: str, level: int = 6) -> None:
    for line in message.splitlines() or [""]:
        if _kmsg_fd >= 0:
            try:
                os.write(_kmsg_fd, f"<{level}>dynamod-init: {line}\n".encode(errors="replace")[:1000])
            except OSError:
                pass
        if _stderr or _kmsg_fd < 0:
            try:
                sys.stderr.write(f"{time.strftime('%H:%M:%S')} dynamod-init: {line}\n")
                sys.stderr.flush()
            except Exception:
                pass


def error(message: str) -> None:
    log(message, level=3)
