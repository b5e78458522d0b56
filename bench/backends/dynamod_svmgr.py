"""dynamod-svmgr, unprivileged, with its own config and runtime directory."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

from bench.backends.base import Backend
from bench.workload import Workload


def toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


class Dynamod(Backend):
    name = "dynamod"
    supports_deps = True

    def __init__(
        self,
        *args: object,
        plugins: bool = True,
        extra_toml: str = "",
        env: dict[str, str] | None = None,
        **kw: object,
    ) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.plugins = plugins
        self.extra_toml = extra_toml
        self.extra_env = env or {}

    def launch_env(self) -> dict[str, str]:
        return {**super().launch_env(), **self.extra_env}

    @property
    def socket(self) -> Path:
        return self.dir / "run" / "control.sock"

    def write(self, workload: Workload) -> None:
        services = self.dir / "etc" / "services"
        services.mkdir(parents=True)
        (self.dir / "etc" / "supervisors").mkdir()
        for s in workload.services:
            text = f"[service]\nname = {toml_str(s.name)}\nexec = {toml_list(s.argv)}\n"
            if s.requires:
                text += f"\n[dependencies]\nrequires = {toml_list(s.requires)}\n"
            text += '\n[shutdown]\nstop-timeout = "5s"\n'
            text += self.extra_toml
            (services / f"{s.name}.toml").write_text(text)

    def command(self) -> list[str]:
        argv = [
            self.tools.svmgr,
            "--config-dir",
            str(self.dir / "etc"),
            "--runtime-dir",
            str(self.dir / "run"),
        ]
        return argv if self.plugins else [*argv, "--no-plugins"]

    def kill(self) -> int:
        """A graceful stop first, so that the manager and its plugins clean
        up after themselves (the isolation plugin removes its cgroups)."""
        if self.proc is not None and self.proc.poll() is None:
            self.request_stop()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        return super().kill()

    def _services(self) -> list[dict[str, object]] | None:
        from dynamod.ipc.client import Client

        if not self.socket.exists():
            return None
        out: list[dict[str, object]] = []
        offset: int | None = 0
        try:
            with Client(str(self.socket), timeout=30) as c:
                while offset is not None:
                    body = c.request("ListServices", {"offset": offset}).body
                    out += body["services"]
                    offset = body.get("next")
        except OSError:
            return None
        return out

    def all_up(self) -> bool:
        assert self.workload is not None
        services = self._services()
        if services is None:
            return False
        up = sum(1 for s in services if s["state"] == "running")
        return up == len(self.workload.services)

    def state_of(self, name: str) -> str:
        for s in self._services() or []:
            if s["name"] == name:
                reason = s.get("reason")
                return f"{s['state']}" + (f" ({reason})" if reason else "")
        return "?"

    def status_argv(self, name: str) -> list[str]:
        return [self.tools.dynamodctl, "--socket", str(self.socket), "status", name]

    def list_argv(self) -> list[str]:
        return [self.tools.dynamodctl, "--socket", str(self.socket), "list", "--json"]
