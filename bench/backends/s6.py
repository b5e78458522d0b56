"""s6 (Debian ``s6``): s6-svscan on a scan directory; one s6-supervise per
service. Plain s6 has no dependencies (s6-rc adds them)."""

from __future__ import annotations

from bench.backends.svdir import ServiceDirBackend


class S6(ServiceDirBackend):
    name = "s6"
    programs = ("s6-svscan", "s6-svstat", "s6-svscanctl")
    package = "s6"
    deps_note = "n/a (plain s6 has none; s6-rc does)"

    def command(self) -> list[str]:
        assert self.workload is not None
        # -c: how many services s6-svscan may maintain (default 500).
        return ["s6-svscan", "-c", str(max(500, len(self.workload.services) + 16)), str(self.svdir)]

    def all_up(self) -> bool:
        """s6-svstat on every service directory (s6 has no bulk query): one
        shell loop, so the sweep costs one fork+exec per service."""
        script = 'for d do s6-svstat -o up "$d" 2>/dev/null || echo false; done'
        out = self.run_tool(["/bin/sh", "-c", script, "sh", *self.service_dirs()]).split()
        assert self.workload is not None
        return out.count("true") == len(self.workload.services)

    def state_of(self, name: str) -> str:
        return self.run_tool(["s6-svstat", str(self.svdir / name)]).strip() or "?"

    def status_argv(self, name: str) -> list[str]:
        return ["s6-svstat", str(self.svdir / name)]

    def request_stop(self) -> None:
        """s6-svscanctl -t: s6-svscan brings every service down (SIGTERM to
        each s6-supervise) and exits when they are gone."""
        self.run_tool(["s6-svscanctl", "-t", str(self.svdir)])
