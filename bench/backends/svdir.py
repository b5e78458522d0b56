"""What s6 and runit share: a directory of service directories, each with an
executable ``run`` script that execs the service."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from bench import procs
from bench.backends.base import Backend, Unavailable
from bench.workload import Workload


class ServiceDirBackend(Backend):
    programs: tuple[str, ...] = ()
    package = ""

    def check(self) -> None:
        missing = [p for p in self.programs if self.tools.which(p) is None]
        if missing:
            raise Unavailable(f"{', '.join(missing)} not installed (Debian package {self.package})")

    @property
    def svdir(self) -> Path:
        return self.dir / "sv"

    def service_dirs(self) -> list[str]:
        assert self.workload is not None
        return [str(self.svdir / s.name) for s in self.workload.services]

    def write(self, workload: Workload) -> None:
        self.svdir.mkdir()
        for s in workload.services:
            d = self.svdir / s.name
            d.mkdir()
            run = d / "run"
            run.write_text(f"#!/bin/sh\nexec {shlex.join(s.argv)}\n")
            os.chmod(run, 0o755)

    def manager_pids(self) -> list[int]:
        """The scanner and one supervisor process per service."""
        top = super().manager_pids()
        return top + [c for p in top for c in procs.children(p)]

    def run_tool(self, argv: list[str]) -> str:
        return subprocess.run(
            argv, capture_output=True, text=True, cwd=self.dir, timeout=120
        ).stdout
