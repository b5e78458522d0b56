"""Spawning service processes on the cheap path.

``subprocess.Popen`` uses vfork only without ``preexec_fn``/``user``/``group``
(a full fork of a large manager costs milliseconds and grows with its memory),
so privilege dropping goes through ``setpriv`` as an exec wrapper and plugins
add their own wrappers (cgroup join, namespaces). The child gets /dev/null as
stdin, one pipe for stdout and stderr, its own session (so signals reach its
whole process group), and only the descriptors listed in ``pass_fds``.

The returned Popen object is marked finished at once: the manager's reaper is
the only caller of ``waitpid``, and a Popen left unfinished would poll its pid
from ``__del__``/``_cleanup`` and could steal the exit status.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass

from dynamod.api import SpawnSpec
from dynamod.config.model import ServiceConfig

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Passed through from the manager's own environment; everything else a
# service sees comes from its config, as with systemd.
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ")


class SpawnError(Exception):
    """The process could not be started; the message is the reason."""


@dataclass
class Spawned:
    pid: int
    output_fd: int  # read end of the stdout/stderr pipe


def read_environment_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments skipped, matching
    quotes around the value removed. A leading ``-`` on the path means a
    missing file is not an error."""
    optional = path.startswith("-")
    if optional:
        path = path[1:]
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if optional:
            return {}
        raise SpawnError(f"environment file {path} not found") from None
    except OSError as exc:
        raise SpawnError(f"cannot read environment file {path}: {exc.strerror}") from None
    env: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "a").isalnum():
            raise SpawnError(f"environment file {path}, line {lineno}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


@dataclass
class Identity:
    uid: int
    gid: int
    name: str
    home: str
    shell: str
    groups: list[int] | None  # None: the user's own groups (initgroups)


def resolve_identity(cfg: ServiceConfig) -> Identity | None:
    """The user/group a service runs as, or None for "as the manager"."""
    if cfg.user is None and cfg.group is None:
        return None
    try:
        pw = pwd.getpwnam(cfg.user) if cfg.user and not cfg.user.isdigit() else (
            pwd.getpwuid(int(cfg.user)) if cfg.user else pwd.getpwuid(os.getuid())
        )
    except KeyError:
        raise SpawnError(f"unknown user {cfg.user!r}") from None
    gid = pw.pw_gid
    if cfg.group is not None:
        try:
            gid = int(cfg.group) if cfg.group.isdigit() else grp.getgrnam(cfg.group).gr_gid
        except KeyError:
            raise SpawnError(f"unknown group {cfg.group!r}") from None
    groups: list[int] | None = None
    if cfg.supplementary_groups:
        groups = []
        for g in cfg.supplementary_groups:
            try:
                groups.append(int(g) if g.isdigit() else grp.getgrnam(g).gr_gid)
            except KeyError:
                raise SpawnError(f"unknown supplementary group {g!r}") from None
    return Identity(pw.pw_uid, gid, pw.pw_name, pw.pw_dir, pw.pw_shell, groups)


def base_environment(cfg: ServiceConfig, ident: Identity | None) -> dict[str, str]:
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    if ident is not None:
        env.update(HOME=ident.home, USER=ident.name, LOGNAME=ident.name, SHELL=ident.shell)
    env["DYNAMOD_SERVICE"] = cfg.name
    env.update(cfg.environment)
    # As in systemd, files override inline settings.
    for path in cfg.environment_file:
        env.update(read_environment_file(path))
    return env


def privilege_wrapper(ident: Identity | None) -> list[str]:
    if ident is None:
        return []
    if os.geteuid() != 0:
        if ident.uid == os.geteuid() and ident.gid == os.getegid() and ident.groups is None:
            return []
        raise SpawnError(
            f"cannot run as user {ident.name!r}: dynamod-svmgr is not running as root"
        )
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    groups = (
        ["--init-groups"]
        if ident.groups is None
        else (["--groups=" + ",".join(map(str, ident.groups))] if ident.groups else ["--clear-groups"])
    )
    return [setpriv, f"--reuid={ident.uid}", f"--regid={ident.gid}", *groups, "--"]


def resolve_executable(argv0: str, path: str) -> str:
    if "/" in argv0:
        if not os.access(argv0, os.X_OK):
            why = "not found" if not os.path.exists(argv0) else "not executable"
            raise SpawnError(f"executable {argv0} {why}")
        return argv0
    found = shutil.which(argv0, path=path)
    if found is None:
        raise SpawnError(f"executable {argv0!r} not found in PATH ({path})")
    return found


def build_spec(cfg: ServiceConfig, argv: tuple[str, ...] | list[str] | None = None) -> SpawnSpec:
    """The default spawn description of a service (hooks adjust it after)."""
    ident = resolve_identity(cfg)
    env = base_environment(cfg, ident)
    args = list(argv if argv is not None else cfg.exec)
    args[0] = resolve_executable(args[0], env["PATH"])
    if cfg.workdir is not None and not os.path.isdir(cfg.workdir):
        raise SpawnError(f"working directory {cfg.workdir} does not exist")
    return SpawnSpec(argv=args, env=env, cwd=cfg.workdir, wrapper=privilege_wrapper(ident))


def spawn(spec: SpawnSpec) -> Spawned:
    """Start the process; raise SpawnError with the OS's reason on failure."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(
            [*spec.wrapper, *spec.argv],
            stdin=subprocess.DEVNULL,
            stdout=w,
            stderr=w,
            env=spec.env,
            cwd=spec.cwd,
            close_fds=True,
            pass_fds=tuple(spec.pass_fds),
            start_new_session=True,
        )
    except OSError as exc:
        os.close(r)
        raise SpawnError(f"cannot execute {spec.argv[0]}: {exc.strerror or exc}") from None
    finally:
        os.close(w)
    proc.returncode = 0  # see module docstring: the reaper owns this pid
    return Spawned(proc.pid, r)
