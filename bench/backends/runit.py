"""runit (Debian ``runit``): runsvdir on a service directory; one runsv per
service. No dependencies."""

from __future__ import annotations

import signal

from bench.backends.svdir import ServiceDirBackend


class Runit(ServiceDirBackend):
    name = "runit"
    programs = ("runsvdir", "runsv", "sv")
    package = "runit"

    def command(self) -> list[str]:
        # -P: every runsv in its own process group.
        return ["runsvdir", "-P", str(self.svdir)]

    def all_up(self) -> bool:
        """One ``sv status`` naming every service directory."""
        out = self.run_tool(["sv", "status", *self.service_dirs()])
        assert self.workload is not None
        return sum(1 for line in out.splitlines() if line.startswith("run: ")) == len(
            self.workload.services
        )

    def state_of(self, name: str) -> str:
        out = self.run_tool(["sv", "status", str(self.svdir / name)]).strip()
        return out.replace(str(self.svdir) + "/", "") or "?"

    def status_argv(self, name: str) -> list[str]:
        return ["sv", "status", str(self.svdir / name)]

    def request_stop(self) -> None:
        """SIGHUP: runsvdir sends TERM to every runsv (each stops its service
        and exits) and exits itself at once; stopping ends when the last
        service and runsv are gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)
