"""Where PID 1 writes: /dev/kmsg on a real boot (the kernel log survives a
broken console), and the console (its stderr). Never raises, never blocks.

A console can stop taking output (a flow-controlled serial line, a pty
nobody reads): PID 1 would stop with it if it wrote there blockingly. So the
console is written through a descriptor of its own in non-blocking mode
(fd 2 is shared with svmgr, and O_NONBLOCK on it would be svmgr's too). What
the console cannot take waits in a small buffer; when that is full, lines
are dropped and counted, and the count is written once the console takes
output again.
"""

from __future__ import annotations

import os
import stat
import time

# Bytes of console output held back while the console does not take them.
CONSOLE_PENDING = 16 * 1024

_kmsg_fd = -1
_console_fd = -2  # -2: not opened yet; -1: no console
_console_is_socket = False
_pending = bytearray()
_dropped = 0


def use_kmsg() -> None:
    global _kmsg_fd
    try:
        _kmsg_fd = os.open("/dev/kmsg", os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        _kmsg_fd = -1


def _open_console() -> int:
    """A non-blocking descriptor for what fd 2 is, or fd 2 itself when
    writing it cannot block (a regular file); -1 when there is none."""
    global _console_is_socket
    try:
        st = os.fstat(2)
    except OSError:
        return -1
    if stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return 2
    if stat.S_ISSOCK(st.st_mode):
        # A socket cannot be opened anew; send() takes MSG_DONTWAIT per call.
        _console_is_socket = True
        return os.dup(2)
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    for path in ("/proc/self/fd/2", "/dev/console" if stat.S_ISCHR(st.st_mode) else ""):
        if not path:
            continue
        try:
            fd = os.open(path, flags)
        except OSError:
            continue
        if os.path.samestat(os.fstat(fd), st):
            return fd
        os.close(fd)
    return -1  # nothing that cannot block: /dev/kmsg (or nothing) only


def _write_console(data: bytes) -> int:
    if _console_is_socket:
        import socket

        with socket.socket(fileno=os.dup(_console_fd)) as s:
            return s.send(data, socket.MSG_DONTWAIT)
    return os.write(_console_fd, data)


def flush_console() -> None:
    """Write what the console could not take before, as far as it takes it
    now (the main loop calls this every round)."""
    global _dropped
    if _console_fd < 0:
        return
    while _pending:
        try:
            n = _write_console(bytes(_pending[:4096]))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            _pending.clear()  # the console is gone: nothing to wait for
            return
        if n <= 0:
            return
        del _pending[:n]
    if _dropped:
        _pending.extend(_drop_notice())
        _dropped = 0
        flush_console()


def _to_console(line: bytes) -> None:
    global _console_fd, _dropped
    if _console_fd == -2:
        try:
            _console_fd = _open_console()
        except OSError:
            _console_fd = -1
    if _console_fd < 0:
        return
    flush_console()
    notice = _drop_notice() if _dropped else b""
    if len(_pending) + len(notice) + len(line) > CONSOLE_PENDING:
        _dropped += 1
        return
    # Room again: the count of what was dropped comes first, in its place.
    _pending.extend(notice)
    _dropped = 0
    _pending.extend(line)
    flush_console()


def _drop_notice() -> bytes:
    return f"dynamod-init: {_dropped} lines dropped: the console did not take them\n".encode()


def dropped_console_lines() -> int:
    """Lines dropped since the console last took output (for tests)."""
    return _dropped


def log(message: str, level: int = 6) -> None:
    for line in message.splitlines() or [""]:
        if _kmsg_fd >= 0:
            try:
                os.write(_kmsg_fd, f"<{level}>dynamod-init: {line}\n".encode(errors="replace")[:1000])
            except OSError:
                pass
        try:
            _to_console(f"{time.strftime('%H:%M:%S')} dynamod-init: {line}\n".encode(errors="replace"))
        except Exception:
            pass


def error(message: str) -> None:
    log(message, level=3)


def write_nonblocking(path: str, text: str) -> None:
    """One message to a terminal (the emergency shell's banner), dropped if
    the terminal does not take it at once."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, text.encode(errors="replace"))
    except OSError:
        pass
    finally:
        os.close(fd)
