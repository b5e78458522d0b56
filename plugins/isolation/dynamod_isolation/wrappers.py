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
   bind mounts, read-only remounts (dynamod_isolation.nssetup, which also
   reports a failed step to the manager).
6. ``env NAME=VALUE ...`` — only when the environment has names a shell
   cannot carry (dash drops them).

The host's own wrappers (a readiness shim, ``setpriv`` for ``[service.user]``)
stay after these: steps 1-3 need the manager's root privileges.

Shell steps are dash, about 1 ms each; every path is quoted with
:func:`shlex.quote`; ``$0`` is ``dynamod-isolation`` so errors say who
failed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable

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


def exec_after(script: str, keep_pwd: bool) -> str:
    """A shell script that runs ``script`` and then execs the rest."""
    return script + ("\n" if keep_pwd else "\nunset PWD\n") + 'exec "$@"'


def setup_step(script: str) -> list[str]:
    return [SH, "-ec", script, ARG0]
