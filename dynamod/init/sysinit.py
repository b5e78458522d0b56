"""Phase B: make the real root usable before any service runs."""

from __future__ import annotations

import os
import socket

from dynamod.init import syscalls
from dynamod.init.log import error, log

RANDOM_SEED = "/var/lib/dynamod/random-seed"
SEED_BYTES = 512
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# (target, fstype, source, flags, options)
PSEUDO_FILESYSTEMS = [
    ("/proc", "proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC, None),
    ("/sys", "sysfs", "sysfs", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC, None),
    ("/dev", "devtmpfs", "devtmpfs", syscalls.MS_NOSUID, "mode=0755"),
    ("/dev/pts", "devpts", "devpts", syscalls.MS_NOSUID | syscalls.MS_NOEXEC, "gid=5,mode=620,ptmxmode=000"),
    ("/dev/shm", "tmpfs", "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=1777"),
    ("/run", "tmpfs", "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=0755"),
    # favordynmods (Linux 6.0): cheap task migrations, which a service
    # manager does on every start (dynamod-isolation moves itself into each
    # service's cgroup for the fork); without it each migration may wait an
    # RCU grace period. Older kernels refuse the option: mounted without.
    ("/sys/fs/cgroup", "cgroup2", "cgroup2", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC,
     "favordynmods"),
]
# Options a kernel may not know, left out on a second attempt.
OPTIONAL_OPTIONS = {"favordynmods"}


def mounted_targets() -> set[str]:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            return {line.split()[1].replace("\\040", " ") for line in f if len(line.split()) > 2}
    except OSError:
        return set()


def mount_pseudo_filesystems() -> None:
    for target, fstype, source, flags, options in PSEUDO_FILESYSTEMS:
        # /proc must be re-read after it is mounted, so ask each time.
        if target in mounted_targets():
            continue
        try:
            os.makedirs(target, exist_ok=True)
            try:
                syscalls.mount(source, target, fstype, flags, options)
            except OSError:
                if options is None or options not in OPTIONAL_OPTIONS:
                    raise
                syscalls.mount(source, target, fstype, flags, None)
        except OSError as exc:
            error(f"cannot mount {fstype} on {target}: {exc.strerror or exc}")


def set_hostname(path: str = "/etc/hostname") -> None:
    try:
        with open(path, encoding="utf-8") as f:
            name = next((ln.strip() for ln in f if ln.strip() and not ln.startswith("#")), "")
    except OSError:
        return
    if not name:
        return
    try:
        socket.sethostname(name)
        log(f"hostname set to {name}")
    except OSError as exc:
        error(f"cannot set hostname {name!r}: {exc.strerror}")


def seed_entropy(path: str = RANDOM_SEED) -> None:
    """Mix the saved seed into the kernel pool, then replace it at once so
    the same seed is never used twice (even if we crash before shutdown)."""
    try:
        with open(path, "rb") as f:
            seed = f.read(SEED_BYTES)
        with open("/dev/urandom", "wb") as f:
            f.write(seed)
    except OSError:
        pass
    save_random_seed(path)


def save_random_seed(path: str = RANDOM_SEED) -> None:
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, os.urandom(SEED_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        log(f"cannot save random seed to {path}: {exc.strerror or exc}")


def ensure_machine_id(path: str = "/etc/machine-id") -> str | None:
    """Create a machine id (32 lowercase hex digits) when missing or empty."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            current = f.read().strip()
        if len(current) == 32 and all(c in "0123456789abcdef" for c in current):
            return current
    except OSError:
        pass
    new = os.urandom(16).hex()
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(new + "\n")
        os.chmod(path, 0o444)
        log(f"created machine id {new}")
    except OSError as exc:
        # A read-only root: put it in /run so it is at least stable this boot.
        error(f"cannot write {path}: {exc.strerror or exc}")
        return None
    return new


def disable_ctrl_alt_del() -> None:
    """The kernel then sends SIGINT to PID 1 instead of rebooting at once."""
    try:
        syscalls.reboot(syscalls.RB_DISABLE_CAD)
    except OSError as exc:
        error(f"cannot disable ctrl-alt-del: {exc.strerror}")


def basic_environment() -> None:
    os.umask(0o022)
    os.environ["PATH"] = DEFAULT_PATH
    os.environ.setdefault("HOME", "/")
    os.environ.setdefault("TERM", "linux")


def phase_b(real_boot: bool, runtime_dir: str) -> None:
    basic_environment()
    if real_boot:
        mount_pseudo_filesystems()
    try:
        os.makedirs(runtime_dir, mode=0o755, exist_ok=True)
    except OSError as exc:
        error(f"cannot create {runtime_dir}: {exc.strerror or exc}")
    if real_boot:
        set_hostname()
        seed_entropy()
        ensure_machine_id()
        disable_ctrl_alt_del()
