"""The wrapper chain put in front of a service's program.

The host spawns ``wrapper + argv`` on the vfork path (no ``preexec_fn``:
a full fork of the manager costs milliseconds and grows with its memory),
so everything that must happen in the child before the service runs is an
exec step that does its part and execs the rest. In order:

1. ``sh -c 'echo $$ > TREE/NAME.service/cgroup.procs && exec "$@"'`` — the
   cgroup join, only when the manager cannot hop into the cgroup for the
   fork (dynamod_isolation.hop; usually it can, and this step is left out).
   The shell joins *before* it execs anything, so the service and everything
   it ever forks are born inside the cgroup (race-free; see
   docs/isolation.md for the measured alternatives).
2. ``nsenter --net=/proc/MANAGER/fd/N`` — join the network namespace the
   manager prepared (dynamod_isolation.netns).
3. ``unshare --user --keep-caps --mount --uts --ipc --cgroup --pid --fork
   --kill-child --mount-proc`` — the other namespaces.
4. With a user namespace: ``sh -c HANDSHAKE`` (the manager writes the
   uid/gid maps, dynamod_isolation.userns), then ``setpriv --reuid=0
   --regid=0 --clear-groups``: become the namespace's root. Until then the
   process's ids are unmapped there (mount(8) would take it for an ordinary
   user), and a later switch to ``[service.user]`` then drops every
   capability as it should.
5. ``sh -c SETUP`` inside the namespaces: the hostname, a private /tmp,
   bind mounts, read-only remounts.
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
        raise ToolMissing(f"{name}(1) is needed and was not found in /usr/sbin:/usr/bin:/sbin:/bin")
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


def _ro_flags(options: str) -> str:
    """Per-mount flags with ``ro`` instead of ``rw``. Passed explicitly: in
    a user namespace flags such as nosuid/nodev are locked, and a
    (re)mount that would drop them is refused."""
    return ",".join(["ro", *(o for o in options.split(",") if o not in ("rw", "ro"))])


def _options_of(path: str, mounts: list[tuple[str, str]]) -> str:
    """The per-mount options of the mount ``path`` is on."""
    best, opts = "", "rw"
    for point, options in mounts:
        if _under(path, [point]) and len(point) >= len(best):
            best, opts = point, options
    return opts


def exec_after(script: str, keep_pwd: bool) -> str:
    """A shell script that runs ``script`` and then execs the rest."""
    return script + ("\n" if keep_pwd else "\nunset PWD\n") + 'exec "$@"'


def setup_script(opts: NamespaceOptions, *, mounts: list[tuple[str, str]] | None = None,
                 unset_pwd: bool = True) -> str:
    """Step 5: what runs inside the new namespaces before the service.
    ``mounts`` is the manager's mount table (:func:`mount_points`)."""
    mounts = mounts or []
    mount = shlex.quote(tool("mount")) if opts.mount_setup else "mount"
    q = shlex.quote

    def bind_ro(source: str, target: str) -> str:
        # One exec for both steps: with "ro", mount(8) binds and then
        # remounts the new mount read-only (with the source's other flags).
        flags = _ro_flags(_options_of(source, mounts))
        return f"{mount} --rbind -o {flags} {q(source)} {q(target)}"

    lines: list[str] = []
    if opts.hostname and "user" in opts.namespaces:
        # In a user namespace /proc/sys/kernel/hostname belongs to the
        # host's root (unmapped there): sethostname(2) through hostname(1),
        # which checks the capability the namespace's root does have.
        lines.append(f"{q(tool('hostname'))} {q(opts.hostname)}")
    elif opts.hostname:
        # Writing it sets the name of the writer's UTS namespace: no exec.
        lines.append(f"echo {q(opts.hostname)} > /proc/sys/kernel/hostname")
    if opts.private_tmp:
        for d in TMP_DIRS:
            if os.path.isdir(d):
                lines.append(f"{mount} -t tmpfs -o mode=1777,nosuid,nodev tmpfs {q(d)}")
    # Bind mounts before the read-only remounts: a bind copies the flags of
    # its source mount, so a writable one made after "/" went read-only
    # would be read-only too.
    points = {point for point, _ in mounts}
    writable = list(opts.writable_paths)
    if opts.protect_system == "strict":
        # /run on the root file system (no mount of its own) would go
        # read-only with "/": make each its own mount point first.
        writable += [p for p in STRICT_WRITABLE if p not in points]
    for p in writable:
        if os.path.exists(p):
            lines.append(f"{mount} --rbind {q(p)} {q(p)}")
    for b in opts.bind_mounts:
        if b.writable:
            lines.append(f"{mount} --rbind {q(b.source)} {q(b.target)}")
        else:
            lines.append(bind_ro(b.source, b.target))
    if opts.protect_system == "full":
        for d in FULL_READ_ONLY:
            if os.path.isdir(d) and not _under(d, opts.writable_paths):
                # Bound onto itself to become a mount point of its own
                # (recursively: what is mounted below, an earlier bind mount
                # included, stays as it is) and made read-only.
                lines.append(bind_ro(d, d))
    elif opts.protect_system == "strict":
        keep = [*STRICT_WRITABLE, *opts.writable_paths, *(b.target for b in opts.bind_mounts)]
        if opts.private_tmp:
            keep += TMP_DIRS
        seen: set[str] = set()
        for point, options in mounts:
            if point in seen or _under(point, keep) or "ro" in options.split(","):
                continue
            seen.add(point)
            lines.append(f"{mount} -o remount,bind,{_ro_flags(options)} {q(point)}")
    if unset_pwd:  # see join_cgroup
        lines.append("unset PWD")
    lines.append('exec "$@"')
    return "\n".join(lines)


def setup_step(script: str) -> list[str]:
    return [SH, "-ec", script, ARG0]
