"""supervisord (PyPI ``supervisor``), from the suite's own venv, with a
generated configuration: one ``[program:x]`` per service, defaults otherwise
(``startsecs = 1``: RUNNING only after a second; output captured to log files
in the trial directory, supervisord's default)."""

from __future__ import annotations

import http.client
import os
import shlex
import socket
import xmlrpc.client
from pathlib import Path
from typing import Any

from bench.backends.base import Backend, Unavailable
from bench.workload import Workload


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float = 60.0) -> None:
        super().__init__()
        self.path = path
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self.path, self.timeout)


class Supervisord(Backend):
    name = "supervisord"
    deps_note = "n/a (priority only, no dependencies)"

    def check(self) -> None:
        if not os.access(self.tools.supervisord, os.X_OK):
            raise Unavailable(f"{self.tools.supervisord} missing (bench/run installs it)")

    @property
    def socket(self) -> Path:
        return self.dir / "supervisor.sock"

    @property
    def conf(self) -> Path:
        return self.dir / "supervisord.conf"

    def write(self, workload: Workload) -> None:
        n = len(workload.services)
        (self.dir / "logs").mkdir()
        lines = [
            "[unix_http_server]",
            f"file={self.socket}",
            "",
            "[supervisord]",
            "nodaemon=true",
            f"logfile={self.dir / 'supervisord.log'}",
            f"pidfile={self.dir / 'supervisord.pid'}",
            f"childlogdir={self.dir / 'logs'}",
            # Two pipes and two log files per program, plus its own.
            f"minfds={max(1024, 6 * n + 256)}",
            f"minprocs={max(200, 2 * n + 256)}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{self.socket}",
            "",
        ]
        for s in workload.services:
            lines += [f"[program:{s.name}]", f"command={shlex.join(s.argv)}", ""]
        self.conf.write_text("\n".join(lines))

    def command(self) -> list[str]:
        return [self.tools.supervisord, "-n", "-c", str(self.conf)]

    def _rpc(self) -> Any:
        return xmlrpc.client.ServerProxy(
            "http://localhost", transport=_UnixTransport(str(self.socket))
        )

    def _infos(self) -> list[dict[str, Any]] | None:
        if not self.socket.exists():
            return None
        try:
            return self._rpc().supervisor.getAllProcessInfo()  # type: ignore[no-any-return]
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return None

    def all_up(self) -> bool:
        assert self.workload is not None
        infos = self._infos()
        if infos is None:
            return False
        return sum(1 for i in infos if i["statename"] == "RUNNING") == len(self.workload.services)

    def state_of(self, name: str) -> str:
        for i in self._infos() or []:
            if i["name"] == name:
                return f"{i['statename']}" + (f" ({i['spawnerr']})" if i.get("spawnerr") else "")
        return "?"

    def status_argv(self, name: str) -> list[str]:
        return [self.tools.supervisorctl, "-c", str(self.conf), "status", name]
