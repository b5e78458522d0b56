"""The final shutdown sequence, run once svmgr has stopped the services (or
the global deadline passed): TERM everything, KILL what is left, save the
random seed, sync, unmount in reverse order, remount / read-only, reboot(2).
In container mode everything after the kills is skipped and init exits.

sync(2) can hang for ever (a dead disk, an unreachable NFS server): it runs
in a child that PID 1 waits for only so long (:func:`bounded_sync`).
"""

from __future__ import annotations

import os
import signal
import time

from dynamod.init import syscalls
from dynamod.init.log import error, log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# Used when /proc/mounts cannot be read (already unmounted, or broken).
FALLBACK_MOUNTS = ["/proc", "/sys", "/dev", "/run", "/dev/pts", "/dev/shm", "/sys/fs/cgroup", "/tmp", "/home", "/var"]
CONTAINER_EXIT = {"poweroff": 0, "halt": 0, "reboot": 133}
SYNC_TIMEOUT = 30.0


def _sync_timeout() -> float:
    try:
        return float(os.environ.get("DYNAMOD_SYNC_TIMEOUT", SYNC_TIMEOUT))
    except ValueError:
        return SYNC_TIMEOUT


def bounded_sync(timeout: float, on_exit: Callable[[tuple[int, int]], Any]) -> bool:
    """sync(2) in a child process, waited for at most ``timeout`` seconds;
    True when it finished. ``DYNAMOD_SYNC_COMMAND`` (a test hook) runs that
    command instead of sync(2)."""
    command = os.environ.get("DYNAMOD_SYNC_COMMAND")
    try:
        if command:
            import shlex

            argv = shlex.split(command)
            pid = os.posix_spawn(argv[0], argv, dict(os.environ), setsigdef=(signal.SIGPIPE,))
        else:
            pid = os.fork()
            if pid == 0:  # the child: nothing but the sync, then out
                try:
                    os.sync()
                finally:
                    os._exit(0)
    except (OSError, ValueError, IndexError) as exc:
        error(f"cannot run sync in a child ({exc}); skipping it")
        return False
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        except InterruptedError:
            continue
        if done:
            on_exit((done, status))
            return True
        if time.monotonic() >= deadline:
            error(f"sync did not finish within {timeout:g}s; going on without it")
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            return False
        time.sleep(0.02)


def kill_all(sig: int) -> None:
    try:
        os.kill(-1, sig)
    except ProcessLookupError:
        pass
    except OSError as exc:
        error(f"kill(-1, {sig}): {exc.strerror}")


def reap_until_empty(timeout: float, on_exit: Callable[[tuple[int, int]], Any]) -> bool:
    """Reap children for up to ``timeout`` seconds; True once none is left."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        except InterruptedError:
            continue
        if pid:
            on_exit((pid, status))
            continue
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def mount_points() -> list[str]:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            targets = [ln.split()[1].replace("\\040", " ") for ln in f if len(ln.split()) > 2]
        if targets:
            return targets
    except OSError:
        pass
    return list(FALLBACK_MOUNTS)


def unmount_all() -> None:
    for target in reversed(mount_points()):
        if target == "/":
            continue
        try:
            syscalls.umount(target)
        except OSError as exc:
            if exc.errno in (22, 2):  # EINVAL/ENOENT: not mounted (any more)
                continue
            try:
                syscalls.umount(target, syscalls.MNT_DETACH)
                log(f"{target} busy; detached lazily")
            except OSError as exc2:
                error(f"cannot unmount {target}: {exc2.strerror}")
    try:
        syscalls.mount("none", "/", None, syscalls.MS_REMOUNT | syscalls.MS_RDONLY)
    except OSError as exc:
        error(f"cannot remount / read-only: {exc.strerror}")


def run(kind: str, *, container: bool, timing: Any, log_reaped: Callable[[tuple[int, int]], Any]) -> int | None:
    """Returns the exit status in container mode; on a real system it calls
    reboot(2) and returns None only if that failed."""
    log(f"final shutdown sequence ({kind})")
    kill_all(signal.SIGTERM)
    if not reap_until_empty(timing.term_wait, log_reaped):
        log(f"processes left after {timing.term_wait:g}s; sending SIGKILL")
        kill_all(signal.SIGKILL)
        if not reap_until_empty(timing.kill_wait, log_reaped):
            error("some processes survived SIGKILL (uninterruptible?)")
    if container:
        if os.environ.get("DYNAMOD_SYNC_COMMAND"):
            bounded_sync(_sync_timeout(), log_reaped)  # the test hook's path
        log(f"container shutdown complete ({kind})")
        return CONTAINER_EXIT.get(kind, 0)
    from dynamod.init.sysinit import save_random_seed

    save_random_seed()
    synced = bounded_sync(_sync_timeout(), log_reaped)
    unmount_all()
    # Once more after the read-only remount; not again if it hung before.
    if synced:
        bounded_sync(_sync_timeout(), log_reaped)
    log(f"{kind} now")
    try:
        syscalls.reboot(syscalls.REBOOT_COMMANDS.get(kind, syscalls.RB_POWER_OFF))
    except OSError as exc:
        error(f"reboot({kind}) failed: {exc.strerror}")
    return None
