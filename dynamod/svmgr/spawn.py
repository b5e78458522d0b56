"""Spawning service processes on the cheap path.

A vfork and an exec: ``os.posix_spawn`` where it can do the job, else
``subprocess.Popen``, which also uses vfork as long as there is no
``preexec_fn``/``user``/``group`` (a full fork of a large manager costs
milliseconds and grows with its memory). So privilege dropping goes through
``setpriv`` as an exec wrapper, plugins add their own wrappers (namespaces)
and context managers around the fork (the cgroup). The child gets /dev/null
as stdin, one pipe for stdout and stderr, its own session (so signals reach
its whole process group), and only the descriptors listed in ``pass_fds``.

A Popen object is marked finished at once: the manager's reaper is the only
caller of ``waitpid``, and a Popen left unfinished would poll its pid from
``__del__``/``_cleanup`` and could steal the exit status.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

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
    problems: list[str] = field(default_factory=list)


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
        pw = pwd.getpwnam(cfg.user) if cfg.user and not (cfg.user.isascii() and cfg.user.isdigit()) else (
            pwd.getpwuid(int(cfg.user)) if cfg.user else pwd.getpwuid(os.getuid())
        )
    except KeyError:
        raise SpawnError(f"unknown user {cfg.user!r}") from None
    gid = pw.pw_gid
    if cfg.group is not None:
        try:
            gid = int(cfg.group) if (cfg.group.isascii() and cfg.group.isdigit()) else grp.getgrnam(cfg.group).gr_gid
        except KeyError:
            raise SpawnError(f"unknown group {cfg.group!r}") from None
    groups: list[int] | None = None
    if cfg.supplementary_groups:
        groups = []
        for g in cfg.supplementary_groups:
            try:
                groups.append(int(g) if g.isascii() and g.isdigit() else grp.getgrnam(g).gr_gid)
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


# Every signal at its default in the service, as systemd does: handlers end
# at exec anyway, but an ignored signal stays ignored — what Python sets
# (SIGPIPE, SIGXFSZ) and what svmgr inherited (a shell's background job has
# SIGINT and SIGQUIT ignored: nginx's stop signal, SIGQUIT, would then do
# nothing). glibc resets the handled ones in the child either way, so the
# full set costs nothing measurable per spawn.
RESET_SIGNALS = tuple(s for s in signal.valid_signals()
                      if s not in (signal.SIGKILL, signal.SIGSTOP) and s < signal.NSIG)
_devnull = -1


def _posix_spawn(argv: list[str], spec: SpawnSpec, w: int, marker: str | None = None) -> int | None:
    """posix_spawn(3) straight from ``os``: the same vfork-and-exec as Popen
    without Popen's Python around it (its error pipe, /dev/null opened per
    call, the object). None when Popen must do it: a working directory
    (os.posix_spawn cannot chdir), a program to look up in PATH, or a
    descriptor number below 3 that dup2 would clobber. Every other
    descriptor of the manager is close-on-exec (Python's default;
    :func:`seal_inherited_fds`, once, for the ones it was started with)."""
    global _devnull
    if _devnull < 0:
        seal_inherited_fds()
        _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    if spec.cwd is not None or "/" not in argv[0] or w < 3 or any(fd < 3 for fd in spec.pass_fds):
        return None
    actions: list[tuple] = []
    if marker is not None:
        # Created by the child itself, before it execs: proof it existed
        # (see dynamod.svmgr.journal). On fd 0, which the next action replaces.
        actions.append((os.POSIX_SPAWN_OPEN, 0, marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    actions += [(os.POSIX_SPAWN_DUP2, _devnull, 0), (os.POSIX_SPAWN_DUP2, w, 1),
                (os.POSIX_SPAWN_DUP2, w, 2)]
    # dup2 onto itself clears close-on-exec (POSIX; glibc >= 2.29)
    actions += [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in spec.pass_fds]
    return os.posix_spawn(argv[0], argv, spec.env, file_actions=actions, setsid=True,
                          setsigdef=RESET_SIGNALS, setsigmask=())


def seal_inherited_fds() -> None:
    """Make every descriptor above 2 close-on-exec: the ones the manager was
    started with are inheritable, and the posix_spawn path relies on exec
    closing everything not passed on purpose."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def spawn(spec: SpawnSpec, marker: str | None = None) -> Spawned:
    """Start the process; raise SpawnError with the OS's reason on failure.
    A problem leaving one of ``spec.around_fork`` comes back in
    ``Spawned.problems``: the process runs and must not be lost.

    ``marker``: a file the child creates just before it execs (run-once
    services, see dynamod.svmgr.journal); it needs the posix_spawn path, so a
    working directory is then entered through ``env --chdir``."""
    if marker is not None and spec.cwd is not None:
        env_prog = shutil.which("env", path=DEFAULT_PATH) or "/usr/bin/env"
        spec.wrapper = [env_prog, f"--chdir={spec.cwd}", "--", *spec.wrapper]
        spec.cwd = None
    argv = [*spec.wrapper, *spec.argv]
    r, w = os.pipe2(os.O_CLOEXEC)
    stack = contextlib.ExitStack() if spec.around_fork else None
    try:
        if stack is not None:
            try:
                for ctx in spec.around_fork:
                    stack.enter_context(ctx)
            except Exception as exc:
                raise SpawnError(str(exc) or type(exc).__name__) from None
        pid = _posix_spawn(argv, spec, w, marker)
        if pid is None:
            if marker is not None:
                with open(marker, "wb"):
                    pass  # (a descriptor below 3 to pass: the marker is written here)
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=w,
                stderr=w,
                env=spec.env,
                cwd=spec.cwd,
                close_fds=True,
                pass_fds=tuple(spec.pass_fds),
                start_new_session=True,
            )
            proc.returncode = 0  # see module docstring: the reaper owns this pid
            pid = proc.pid
    except BaseException as exc:
        os.close(r)
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.close()
        if isinstance(exc, OSError):
            raise SpawnError(f"cannot execute {argv[0]}: {exc.strerror or exc}") from None
        raise
    finally:
        os.close(w)
    problems: list[str] = []
    if stack is not None:
        try:
            stack.close()
        except Exception as exc:
            problems.append(f"after the fork: {type(exc).__name__}: {exc}")
    return Spawned(pid, r, problems)
