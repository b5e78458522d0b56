"""Phase A: from the initramfs to the real root.

When ``/`` is an initramfs and the kernel command line asks for a root,
the boot media hook (``dynamod_mount_root``, implemented by the
dynamod-bootmedia plugin) mounts it on /newroot; init then moves the pseudo
file systems over, empties the initramfs, switches root and re-executes
/sbin/dynamod-init for Phase B.
"""

from __future__ import annotations

import os
import stat

from dynamod.init import syscalls
from dynamod.init.log import log

NEWROOT = "/newroot"
INITRAMFS_TYPES = {"rootfs", "ramfs", "tmpfs"}


class PhaseAError(Exception):
    """Phase A cannot continue; the message is shown on the console."""


def parse_cmdline(text: str) -> dict[str, str]:
    """``root=LABEL=x ro quiet`` → {"root": "LABEL=x", "ro": "", "quiet": ""}.
    Double quotes group a value with spaces (as the kernel does)."""
    out: dict[str, str] = {}
    word, quoted, words = "", False, []
    for ch in text.strip():
        if ch == '"':
            quoted = not quoted
        elif ch.isspace() and not quoted:
            if word:
                words.append(word)
            word = ""
        else:
            word += ch
    if word:
        words.append(word)
    for w in words:
        key, _, value = w.partition("=")
        out[key] = value
    return out


def read_cmdline() -> dict[str, str]:
    try:
        with open("/proc/cmdline", encoding="utf-8", errors="replace") as f:
            return parse_cmdline(f.read())
    except OSError:
        return {}


def root_fstype() -> str:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            fstype = ""
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[1] == "/":
                    fstype = parts[2]  # the last mount on / is the visible one
            return fstype
    except OSError:
        return ""


def wants_phase_a(cmdline: dict[str, str]) -> bool:
    return root_fstype() in INITRAMFS_TYPES and ("root" in cmdline or "dynamod.live" in cmdline)


def mount_root(cmdline: dict[str, str]) -> None:
    from dynamod.plugins import make_plugin_host

    host = make_plugin_host()
    for problem in host.problems:
        log(f"plugin problem: {problem}")
    if not host.pm.hook.dynamod_mount_root.get_hookimpls():
        raise PhaseAError(
            "the kernel command line asks for a root file system "
            f"({' '.join(k + ('=' + v if v else '') for k, v in cmdline.items() if k in ('root', 'dynamod.live'))}) "
            "but no boot media plugin is installed: install dynamod-bootmedia in the initramfs"
        )
    os.makedirs(NEWROOT, exist_ok=True)
    try:
        handled = host.pm.hook.dynamod_mount_root(cmdline=cmdline, newroot=NEWROOT)
    except Exception as exc:
        raise PhaseAError(f"mounting the root failed: {exc}") from exc
    if not handled:
        raise PhaseAError("no boot media plugin could handle this kernel command line")
    if not os.path.exists(os.path.join(NEWROOT, "sbin/dynamod-init")):
        raise PhaseAError("the new root has no /sbin/dynamod-init")


def _delete_initramfs(root_dev: int) -> None:
    """Free the initramfs' memory: delete its files without crossing into
    other file systems (the new root is mounted inside it)."""
    stack = ["/"]
    dirs: list[str] = []
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != root_dev:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(e.path)
                dirs.append(e.path)
            else:
                try:
                    os.unlink(e.path)
                except OSError:
                    pass
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except OSError:
            pass


def switch_root(newroot: str = NEWROOT) -> None:
    """Move /proc, /sys, /dev (and /run) into the new root, empty the
    initramfs, make the new root / and exec its dynamod-init."""
    for sub in ("/proc", "/sys", "/dev", "/run"):
        target = newroot + sub
        try:
            os.makedirs(target, exist_ok=True)
            syscalls.mount(sub, target, None, syscalls.MS_MOVE)
        except OSError as exc:
            log(f"cannot move {sub} into the new root: {exc.strerror or exc}")
    root_dev = os.stat("/").st_dev
    os.chdir(newroot)
    _delete_initramfs(root_dev)
    syscalls.mount(".", "/", None, syscalls.MS_MOVE)
    os.chroot(".")
    os.chdir("/")
    log("switched root; executing /sbin/dynamod-init")
    os.execv("/sbin/dynamod-init", ["/sbin/dynamod-init"])
