"""dynamod-svmgr: the service manager process.

Runs as root under dynamod-init, or unprivileged as a plain process with its
own config and runtime directories (tests, demos, per-user service trees).
"""

from __future__ import annotations

import sys

# asyncio imports ssl for its TLS transports, and with it OpenSSL: about 4 MB
# of svmgr's RSS and 5 ms of every start, for TLS that svmgr never does.
# Hiding ssl while asyncio is imported leaves asyncio's TLS support off in
# this process (a plugin wanting TLS runs it in a helper process, see
# docs/plugins.md); ssl itself stays importable afterwards.
if "asyncio" not in sys.modules and "ssl" not in sys.modules:
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import asyncio
    finally:
        del sys.modules["ssl"]

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from typing import Any

from dynamod.cmdline import parse as parse_command_line
from dynamod.config.extensions import Extensions, collect_extensions
from dynamod.config.loader import check_or_raise, load_config
from dynamod.config.model import ConfigError, SystemConfig
from dynamod.plugins import PluginHost, make_plugin_host

PR_SET_CHILD_SUBREAPER = 36
EXIT_ROOT_FAILED = 3


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} dynamod-svmgr: {message}", file=sys.stderr, flush=True)


def raise_fd_limit() -> None:
    """RLIMIT_NOFILE's soft limit up to the hard one: every service and
    every client costs descriptors, and the kernel's default soft limit
    (1024) is far below what a manager needs (services inherit it too)."""
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            # setrlimit refuses a soft limit above fs.nr_open.
            with open("/proc/sys/fs/nr_open") as f:
                hard = int(f.read())
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (OSError, ValueError) as exc:
        log(f"warning: cannot raise the file descriptor limit: {exc}")


def set_subreaper() -> bool:
    """Daemons that double-fork stay our descendants, so we can reap them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except OSError:
        return False


USAGE = """usage: dynamod-svmgr [--config-dir DIR] [--runtime-dir DIR] [--log FILE] [--no-plugins]

dynamod service manager.
  --config-dir DIR   service configuration (default $DYNAMOD_CONFIG_DIR, else /etc/dynamod)
  --runtime-dir DIR  control socket and state (default $DYNAMOD_RUNTIME_DIR, else /run/dynamod)
  --log FILE         append the log to FILE ('-': stderr). Default: stderr, but
                     RUNTIME-DIR/svmgr.log when stderr is a terminal outside
                     dynamod-init (a shell's terminal, shared with later commands)
  --no-plugins       load no plugin entry points
"""


class Options:
    def __init__(self) -> None:
        self.config_dir = os.environ.get("DYNAMOD_CONFIG_DIR", "/etc/dynamod")
        self.runtime_dir = os.environ.get("DYNAMOD_RUNTIME_DIR", "/run/dynamod")
        self.no_plugins = False
        self.log: str | None = None


def parse_args(argv: list[str] | None) -> Options:
    opts = Options()
    parse_command_line("dynamod-svmgr", USAGE, argv, opts, flags=("--no-plugins",),
                       valued=("--config-dir", "--runtime-dir", "--log"))
    return opts


class Daemon:
    def __init__(self, args: Options) -> None:
        self.args = args
        # Absolute: status shows where each file is, wherever svmgr was started.
        self.config_dir = os.path.abspath(args.config_dir)
        self.runtime_dir = args.runtime_dir
        self.exit_code = 0
        self.done: asyncio.Event | None = None
        self.plugins: PluginHost | None = None
        self.ext: Extensions | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.link: Any = None

    def load(self) -> SystemConfig:
        return check_or_raise(load_config(self.config_dir, self.ext))

    async def run(self) -> int:
        from dynamod.ipc.server import ControlServer
        from dynamod.svmgr.control import Control
        from dynamod.svmgr.manager import Manager

        loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        raise_fd_limit()
        if not set_subreaper():
            log("warning: could not become a child subreaper; forking daemons may escape")
        self.plugins = make_plugin_host(load_entrypoints=not self.args.no_plugins)
        for problem in self.plugins.problems:
            log(f"warning: {problem}")
        self.ext = collect_extensions(self.plugins)
        cfg = load_config(self.config_dir, self.ext)
        for d in cfg.diagnostics:
            log(str(d))
        if cfg.errors:
            log(f"{len(cfg.errors)} configuration error(s); starting the valid services only")
        os.makedirs(self.runtime_dir, mode=0o755, exist_ok=True)
        self.lock_fd = lock_runtime_dir(self.runtime_dir)
        from dynamod.svmgr.initlink import InitLink

        # Under dynamod-init a previous svmgr may have run: resume its record.
        resume = "DYNAMOD_INIT_FD" in os.environ
        manager = Manager(cfg, runtime_dir=self.runtime_dir, extensions=self.ext, plugins=self.plugins,
                          log=log, resume=resume)
        manager.reaper.install(loop)
        self.manager = manager

        def spawn_task(coro: Any) -> None:
            task = loop.create_task(coro)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        self.link = InitLink.from_environment(
            on_shutdown=lambda kind: spawn_task(self.shutdown(kind)),
            on_orphans=manager.orphans_exited,
            log=log,
        )
        if self.link is not None:
            self.link.start(loop)

        def root_failed(reason: str) -> None:
            action = manager.supervisors["root"].cfg.on_failure
            log(f"ROOT SUPERVISOR FAILED: {reason}")
            if action == "none":
                log("system action: none (configured); services stay stopped")
            elif action in ("poweroff", "reboot", "halt"):
                log(f"system action: {action}")
                spawn_task(self.shutdown(action))
            elif action == "emergency" and self.link is not None:
                log("system action: emergency (asking dynamod-init for the emergency shell)")
                self.link.send("Emergency", {"reason": f"root supervisor failed: {reason}"})
            else:
                why = "configured" if action == "exit" else "emergency, unprivileged mode"
                log(f"system action: stopping everything and exiting ({why})")
                self.exit_code = EXIT_ROOT_FAILED
                spawn_task(self.shutdown("exit"))

        manager.on_root_failure = root_failed
        if resume:
            from dynamod.svmgr.adopt import adopt_previous

            adopt_previous(manager)
        control = Control(manager, self.load, self.shutdown, config_dir=self.config_dir)
        server = ControlServer(os.path.join(self.runtime_dir, "control.sock"), control.handle, log=log)
        await server.start()
        loop.add_signal_handler(signal.SIGTERM, lambda: spawn_task(self.shutdown("exit")))
        loop.add_signal_handler(signal.SIGINT, lambda: spawn_task(self.shutdown("exit")))
        loop.add_signal_handler(signal.SIGHUP, lambda: spawn_task(self.reload()))
        from dynamod.svmgr.reaper import quiet_wakeup_fd

        quiet_wakeup_fd()
        log(f"started: {len(manager.services)} services, control socket {server.path}")
        if self.link is not None:
            link = self.link
            manager.logd.kmsg = lambda level, text: link.send("LogToKmsg", {"level": level, "message": text[:1024]})
        manager.logd.start()
        manager.start_all()
        await self.done.wait()
        await server.close()
        if manager.engine.all_down():
            manager.journal.discard()
        return self.exit_code

    async def reload(self) -> None:
        try:
            cfg = self.load()
        except ConfigError as exc:
            log(f"reload refused, nothing changed:\n{exc}")
            return
        from dynamod.svmgr.control import describe_reload

        result = await self.manager.reload(cfg)
        log("reloaded (SIGHUP): " + describe_reload(result))

    async def shutdown(self, kind: str) -> None:
        if self.manager.shutting_down:
            return
        log(f"shutdown ({kind}): stopping all services")
        started = time.monotonic()
        await self.manager.shutdown()
        log(f"all services stopped in {time.monotonic() - started:.2f}s")
        if self.link is not None and kind in ("poweroff", "reboot", "halt"):
            self.link.send("RequestShutdown", {"kind": kind})
        assert self.done is not None
        self.done.set()


class AlreadyRunning(OSError):
    pass


def lock_runtime_dir(runtime_dir: str) -> int:
    """One svmgr per runtime directory: two would fight over the control
    socket and the state journal. The lock dies with its holder."""
    import fcntl

    path = os.path.join(runtime_dir, "svmgr.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        except OSError:
            holder = "?"
        os.close(fd)
        raise AlreadyRunning(f"another dynamod-svmgr (pid {holder}) runs with runtime directory "
                             f"{runtime_dir}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def redirect_log(args: Options) -> None:
    """Send stderr (and stdout) to the log file: ``--log FILE``, or, when
    stderr is a terminal and no dynamod-init is above us, the runtime
    directory's svmgr.log (a background svmgr must not write into the
    commands typed after it). One line on the terminal says where."""
    target = args.log
    if target == "-":
        return
    if target is None:
        if "DYNAMOD_INIT_FD" in os.environ or not os.isatty(2):
            return
        target = os.path.join(args.runtime_dir, "svmgr.log")
        os.makedirs(args.runtime_dir, mode=0o755, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    if os.isatty(2):
        print(f"dynamod-svmgr: logging to {os.path.abspath(target)} (--log FILE, or --log - for this terminal)",
              file=sys.stderr, flush=True)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        redirect_log(args)
    except OSError as exc:
        log(f"fatal: cannot open the log {args.log}: {exc.strerror or exc}")
        sys.exit(1)
    daemon = Daemon(args)
    try:
        code = asyncio.run(daemon.run())
    except KeyboardInterrupt:
        code = 130
    except OSError as exc:
        log(f"fatal: {exc}")
        code = 1
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
