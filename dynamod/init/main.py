"""dynamod-init's entry point: choose the mode, boot, run the loop, and never
let anything escape while we are PID 1."""

from __future__ import annotations

import os
import sys
import time

from dynamod.cmdline import parse as parse_command_line
from dynamod.init.log import error, log, use_kmsg

USAGE = """usage: dynamod-init [--container] [--config-dir DIR] [--runtime-dir DIR] [--write-machine-id]

dynamod PID 1.
  --container         run as PID 1 of a container / PID namespace (also: $container is set)
  --config-dir DIR    service configuration (default /etc/dynamod)
  --runtime-dir DIR   runtime directory (default /run/dynamod)
  --write-machine-id  create /etc/machine-id if missing or empty, then exit
"""


class Options:
    def __init__(self) -> None:
        self.container = False
        self.config_dir = "/etc/dynamod"
        self.runtime_dir = "/run/dynamod"
        self.write_machine_id = False


def parse_args(argv: list[str] | None) -> Options:
    opts = Options()
    parse_command_line("dynamod-init", USAGE, argv, opts,
                       flags=("--container", "--write-machine-id"),
                       valued=("--config-dir", "--runtime-dir"))
    return opts


# Container managers announce themselves in this (lower-case) variable.
CONTAINER_ENV = "container"
# Monotonic times of the boot, in the environment svmgr inherits
# (docs/cli.md, "analyze").
BOOT_INIT_START = "DYNAMOD_BOOT_INIT_START"
BOOT_SWITCHED = "DYNAMOD_BOOT_SWITCHED"


def in_container(args: Options) -> bool:
    return args.container or bool(os.environ.get(CONTAINER_ENV))


def boot(args: Options) -> int:
    from dynamod.init import phase_a, sysinit
    from dynamod.init.core import Init

    container = in_container(args)
    cmdline: dict[str, str] = {}
    if not container:
        # For `dynamodctl analyze` (svmgr inherits the environment): when
        # the first userspace process ran (the kernel's time), kept across
        # the initramfs' exec of the real root's init.
        os.environ.setdefault(BOOT_INIT_START, repr(time.monotonic()))
        use_kmsg()
        sysinit.mount_pseudo_filesystems()
        cmdline = phase_a.read_cmdline()
        while phase_a.wants_phase_a(cmdline):
            try:
                phase_a.mount_root(cmdline)
                os.environ[BOOT_SWITCHED] = repr(time.monotonic())  # the initramfs' end
                phase_a.switch_root()  # does not return
            except Exception as exc:
                error(f"Phase A failed: {exc}")
                emergency_shell_blocking(f"Phase A failed: {exc}")
    sysinit.phase_b(real_boot=not container, runtime_dir=args.runtime_dir)
    init = Init(
        container=container,
        config_dir=args.config_dir,
        runtime_dir=args.runtime_dir,
        emergency_on_start=cmdline.get("dynamod.emergency") == "1",
    )
    return init.run()


def emergency_shell_blocking(reason: str) -> None:
    """Before the main loop exists: run a shell on the console and wait."""
    from dynamod.init.core import RESET_IN_CHILD, _shell_argv
    from dynamod.init.log import write_nonblocking

    argv = _shell_argv()
    console = os.environ.get("DYNAMOD_CONSOLE", "/dev/console")
    try:
        fd = os.open(console, os.O_RDWR | os.O_NOCTTY)
        write_nonblocking(console, f"\ndynamod-init: {reason}\ndynamod-init: emergency shell; exit it to retry\n")
        pid = os.posix_spawn(argv[0], argv, dict(os.environ), setsid=True, setsigdef=RESET_IN_CHILD,
                             file_actions=[(os.POSIX_SPAWN_DUP2, fd, n) for n in (0, 1, 2)])
        os.close(fd)
        os.waitpid(pid, 0)
    except OSError as exc:
        error(f"emergency shell unavailable: {exc}")
        time.sleep(5)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.write_machine_id:
        from dynamod.init.sysinit import ensure_machine_id

        sys.exit(0 if ensure_machine_id() else 1)
    if os.getpid() != 1:
        print("dynamod-init: must run as PID 1 (in a PID namespace: unshare --pid --fork "
              "--mount-proc dynamod-init --container); to run services without it use "
              "dynamod-svmgr --config-dir DIR --runtime-dir DIR", file=sys.stderr)
        sys.exit(2)
    while True:
        try:
            code = boot(args)
        except BaseException as exc:  # PID 1: nothing escapes
            error(f"fatal error in init: {type(exc).__name__}: {exc}")
            if in_container(args):
                sys.exit(1)
            emergency_shell_blocking(f"init crashed: {exc}")
            continue
        log(f"exiting with status {code}")
        sys.exit(code)


if __name__ == "__main__":
    main()
