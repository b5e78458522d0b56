"""The wrapper chain put in front of a service's program.

The host spawns ``wrapper + argv`` on the vfork path (no ``preexec_fn``:
a full fork of the manager costs milliseconds and grows with its memory),
so everything that must happen in the child before the service runs is an
exec step that does its part and execs the rest. In order:

1. ``sh -c 'echo $$ > TREE/NAME.service/cgroup.procs && exec "$@"'`` — the
   cgroup join. The shell joins *before* it execs anything, so the service
   and everything it ever forks are born inside the cgroup (race-free; see
   docs/isolation.md for the measured alternatives).
2. ``nsenter --net=/proc/MANAGER/fd/N`` — join the network namespace the
   manager prepared (dynamod_isolation.netns).
3. ``unshare --mount --uts --ipc --cgroup --user --pid --fork --kill-child
   --mount-proc`` — the other namespaces.
4. ``sh -c SETUP`` inside them: the user namespace handshake, the hostname,
   a private /tmp, bind mounts, read-only remounts.
5. ``setpriv --reuid=0 --regid=0 --clear-groups`` — with a user namespace:
   become its root (the ids were unmapped until the maps were written), so
   that a later switch to ``[service.user]`` drops every capability.
6. ``env NAME=VALUE ...`` — only when the environment has names a shell
   cannot carry (dash drops them).

The host's own wrappers (a readiness shim, ``setpriv`` for ``[service.user]``)
stay after these: steps 1-3 need the manager's root privileges.

Shell steps are dash, about 1 ms each; every path is quoted with
:func:`shlex.quote`; ``$0`` is ``dynamod-isolation`` so errors say who
failed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Iterable

from dynamod_isolation.cgroups import unescape_mount_path
from dynamod_isolation.options import (
    FULL_READ_ONLY,
    STRICT_WRITABLE,
    NamespaceOptions,
)

SH = "/bin/sh"
ARG0 = "dynamod-isolation"
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# unshare(1) option per namespace; net is joined with nsenter instead.
UNSHARE_FLAGS = {
    "mnt": ["--mount", "--propagation", "private"],
    "uts": ["--uts"],
    "ipc": ["--ipc"],
    "cgroup": ["--cgroup"],
    # Keep the new namespace's capabilities across the exec of the setup
    # shell: until the manager has written the maps, the process's ids are
    # unmapped there, and exec would otherwise drop them.
    "user": ["--user", "--keep-caps"],
    "pid": ["--pid", "--fork", "--kill-child", "--mount-proc"],
}
TMP_DIRS = ("/tmp", "/var/tmp")


class ToolMissing(Exception):
    pass


def tool(name: str) -> str:
    path = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise ToolMissing(f"{name}(1) from util-linux is needed and was not found")
    return path


def join_cgroup(procs: str, env: dict[str, str]) -> list[str]:
    """Step 1. dash puts PWD into the environment it passes on; take it out
    again unless the service's own environment has one."""
    script = 'echo $$ > "$1" || exit 1; shift; '
    if "PWD" not in env:
        script += "unset PWD; "
    return [SH, "-c", script + 'exec "$@"', ARG0, procs]


def join_netns(manager_pid: int, fd: int) -> list[str]:
    return [tool("nsenter"), f"--net=/proc/{manager_pid}/fd/{fd}", "--"]


def unshare(namespaces: Iterable[str]) -> list[str]:
    """Step 3; empty when nothing but net (or nothing at all) is asked for."""
    args: list[str] = []
    for ns in ("user", "mnt", "uts", "ipc", "cgroup", "pid"):  # user first: it owns the others
        if ns in namespaces:
            args += UNSHARE_FLAGS[ns]
    return [tool("unshare"), *args, "--"] if args else []


def become_root() -> list[str]:
    return [tool("setpriv"), "--reuid=0", "--regid=0", "--clear-groups", "--"]


def env_fixup(env: dict[str, str]) -> list[str]:
    """Step 6: variables whose names a shell drops (``A-B=1``)."""
    odd = [f"{k}={v}" for k, v in env.items() if not _SHELL_NAME.fullmatch(k)]
    return [tool("env"), *odd] if odd else []


# ---------------------------------------------------------------- mounts


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str]]:
    """``(mount point, per-mount options)`` of every mount, as the manager
    sees them: the new mount namespace starts as a copy of the manager's."""
    out: list[tuple[str, str]] = []
    with open(mountinfo, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 5:
                out.append((unescape_mount_path(parts[4]), parts[5]))
    return out


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _ro_options(options: str) -> str:
    """Per-mount flags with ``ro`` instead of ``rw``. Passed explicitly on
    remount: inside a user namespace, flags such as nosuid/nodev are locked
    and a remount that drops them is refused."""
    keep = [o for o in options.split(",") if o not in ("rw", "ro")]
    return ",".join(["remount", "bind", "ro", *keep])


def _options_of(path: str, mounts: list[tuple[str, str]]) -> str:
    """The per-mount options of the mount ``path`` is on."""
    best, opts = "", "rw"
    for point, options in mounts:
        if _under(path, [point]) and len(point) >= len(best):
            best, opts = point, options
    return opts


def setup_script(opts: NamespaceOptions, *, handshake: str = "",
                 mounts: list[tuple[str, str]] | None = None) -> str:
    """Step 4: what runs inside the new namespaces before the service.
    ``mounts`` is the manager's mount table (:func:`mount_points`)."""
    mounts = mounts or []
    mount = shlex.quote(tool("mount")) if opts.mount_setup else "mount"
    q = shlex.quote

    def read_only(point: str, source: str) -> str:
        return f"{mount} -o {_ro_options(_options_of(source, mounts))} {q(point)}"

    lines: list[str] = []
    if handshake:
        lines.append(handshake)
    if opts.hostname:
        # /proc/sys/kernel/hostname sets the name of the UTS namespace the
        # writer is in; no hostname(1) exec needed.
        lines.append(f"echo {q(opts.hostname)} > /proc/sys/kernel/hostname")
    if opts.private_tmp:
        for d in TMP_DIRS:
            if os.path.isdir(d):
                lines.append(f"{mount} -t tmpfs -o mode=1777,nosuid,nodev tmpfs {q(d)}")
    # Bind mounts before the read-only remounts: a bind copies the flags of
    # its source mount, so a writable one made after "/" went read-only
    # would be read-only too.
    for p in opts.writable_paths:
        if os.path.exists(p):
            lines.append(f"{mount} --bind {q(p)} {q(p)}")
    for b in opts.bind_mounts:
        lines.append(f"{mount} --rbind {q(b.source)} {q(b.target)}")
        if not b.writable:
            lines.append(read_only(b.target, b.source))
    if opts.protect_system == "full":
        for d in FULL_READ_ONLY:
            if os.path.isdir(d) and not _under(d, opts.writable_paths):
                # Bound onto itself to become a mount point of its own
                # (recursively: what is mounted below, an earlier bind mount
                # included, stays as it is), then made read-only.
                lines.append(f"{mount} --rbind {q(d)} {q(d)}")
                lines.append(read_only(d, d))
    elif opts.protect_system == "strict":
        keep = [*STRICT_WRITABLE, *opts.writable_paths, *(b.target for b in opts.bind_mounts)]
        if opts.private_tmp:
            keep += TMP_DIRS
        seen: set[str] = set()
        for point, options in mounts:
            if point in seen or _under(point, keep) or "ro" in options.split(","):
                continue
            seen.add(point)
            lines.append(f"{mount} -o {_ro_options(options)} {q(point)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def setup_step(script: str) -> list[str]:
    return [SH, "-ec", script, ARG0]
