"""What every backend (dynamod, a peer, or the floor) provides to the
measurements."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path

from bench import procs
from bench.common import TOKEN_VAR, Scratch, Tools
from bench.workload import Workload


class Unavailable(Exception):
    """The backend cannot run here; the message says why."""


class Backend(ABC):
    name = "?"
    # False: the manager has no dependencies between services.
    supports_deps = False
    deps_note = "n/a (no dependency support)"

    def __init__(self, scratch: Scratch, tools: Tools) -> None:
        self.scratch = scratch
        self.tools = tools
        self.dir: Path = scratch.root
        self.proc: subprocess.Popen[bytes] | None = None
        self.workload: Workload | None = None

    # -- set-up -----------------------------------------------------------------
    def check(self) -> None:  # noqa: B027 - most backends need nothing
        """Raise Unavailable if this backend cannot run."""

    def prepare(self, workload: Workload, label: str) -> None:
        """Write the configuration of ``workload`` into a fresh directory."""
        self.dir = self.scratch.trial(f"{self.name}-{label}")
        self.workload = workload
        self.write(workload)

    @abstractmethod
    def write(self, workload: Workload) -> None: ...

    @abstractmethod
    def command(self) -> list[str]:
        """The manager's command line."""

    def launch_env(self) -> dict[str, str]:
        return self.scratch.env()

    def launch(self, argv: list[str] | None = None) -> None:
        log = open(self.dir / "manager.log", "wb")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                argv or self.command(),
                cwd=self.dir,
                env=self.launch_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()

    # -- observation -------------------------------------------------------------
    def manager_pids(self) -> list[int]:
        """The manager's own processes (for CPU, memory and descriptors)."""
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    @abstractmethod
    def all_up(self) -> bool:
        """One query of the manager's own status: are all services up?"""

    def status_argv(self, name: str) -> list[str] | None:
        """A status command for one service, as a user would type it."""
        return None

    def state_of(self, name: str) -> str:
        """The manager's word for a service's state (restart measurement)."""
        return "?"

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.dir / "manager.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- tear-down ---------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the manager to stop every service (graceful)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stopped(self) -> bool:
        """True once the manager has finished stopping (it exited)."""
        return self.proc is None or self.proc.poll() is not None

    def kill(self) -> int:
        """Remove every process of this run (SIGKILL), reap the manager and
        return how many processes were left. Cgroups the processes were in
        (the isolation plugin's) are removed once empty."""
        left = 0
        cgroups = procs.cgroups_of(procs.ours(str(self.scratch.root), TOKEN_VAR))
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                left += 1
            self.proc.wait()
        left += procs.sweep(str(self.scratch.root), TOKEN_VAR)
        procs.remove_cgroups(cgroups)
        self.proc = None
        return left
