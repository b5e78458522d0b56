"""The floor backend: bench/floor.py, a plain Python loop that fork-execs the
same services (in topological order) and has no status of its own."""

from __future__ import annotations

import json

from bench.backends.base import Backend
from bench.common import BENCH_DIR
from bench.workload import Workload


class Floor(Backend):
    name = "floor"
    supports_deps = True

    def write(self, workload: Workload) -> None:
        spec = [
            {"name": s.name, "argv": list(s.argv), "requires": list(s.requires)}
            for s in workload.services
        ]
        (self.dir / "floor.json").write_text(json.dumps({"services": spec}))

    def command(self) -> list[str]:
        return [
            self.tools.python,
            "-I",
            "-S",
            str(BENCH_DIR / "floor.py"),
            str(self.dir / "floor.json"),
        ]

    def all_up(self) -> bool:
        """The floor keeps no status: its services are up when they run."""
        return True
