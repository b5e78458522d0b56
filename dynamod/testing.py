"""Helpers for testing dynamod and dynamod plugins against a real service
manager: a config tree in a temporary directory and a ``dynamod-svmgr``
process running it unprivileged, driven over its real control socket.

Plugin authors use it the same way (``from dynamod.testing import ...``)::

    def test_my_detector(tmp_path):
        tree = ConfigTree(tmp_path / "etc")
        tree.service("web", '''
            [service]
            name = "web"
            exec = ["python3", "-m", "http.server", "8080"]
            [readiness]
            type = "http"
            url = "http://127.0.0.1:8080/"
        ''')
        with Svmgr(tree.root, tmp_path / "run") as mgr:
            assert mgr.wait_state("web", "running")["state"] == "running"
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dynamod.ipc.client import Client, ConnectError


class ConfigTree:
    """A config directory with ``services/`` and ``supervisors/``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        (self.root / "services").mkdir(parents=True, exist_ok=True)
        (self.root / "supervisors").mkdir(parents=True, exist_ok=True)

    def service(self, name: str, text: str) -> Path:
        path = self.root / "services" / f"{name}.toml"
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def supervisor(self, name: str, text: str) -> Path:
        path = self.root / "supervisors" / f"{name}.toml"
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def simple(
        self,
        name: str,
        script: str = "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        *,
        extra: str = "",
        **service_keys: Any,
    ) -> Path:
        """A ``/bin/sh -c SCRIPT`` service; ``service_keys`` go into
        ``[service]`` and ``extra`` is appended as raw TOML."""
        lines = ["[service]", f"name = {_toml(name)}", f"exec = {_toml(['/bin/sh', '-c', script])}"]
        lines += [f"{k.replace('_', '-')} = {_toml(v)}" for k, v in service_keys.items()]
        return self.service(name, "\n".join(lines) + "\n" + textwrap.dedent(extra))

    def remove(self, name: str) -> None:
        (self.root / "services" / f"{name}.toml").unlink()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Iterable):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


class Svmgr:
    """A ``dynamod-svmgr`` subprocess; stop it with :meth:`stop` or use it as
    a context manager. Its stderr goes to ``runtime_dir/svmgr.log``."""

    def __init__(
        self,
        config_dir: str | os.PathLike[str],
        runtime_dir: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] = (),
        start: bool = True,
    ) -> None:
        self.config_dir = Path(config_dir)
        self.runtime_dir = Path(runtime_dir)
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.runtime_dir / "control.sock")
        self.log_path = self.runtime_dir / "svmgr.log"
        self.env = dict(os.environ if env is None else env)
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self, timeout: float = 15.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept for the process lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dynamod.svmgr.main",
                "--config-dir",
                str(self.config_dir),
                "--runtime-dir",
                str(self.runtime_dir),
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=self.env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dynamod-svmgr exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with Client(self.socket, timeout=5) as c:
                    c.request("ListServices")
                return
            except (ConnectError, OSError):
                time.sleep(0.02)
        raise TimeoutError(f"dynamod-svmgr did not open {self.socket}:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, timeout: float | None = 60.0) -> Client:
        return Client(self.socket, timeout=timeout)

    def request(self, type: str, body: dict[str, Any] | None = None, timeout: float | None = 60.0) -> Any:
        """Send one request on a fresh connection; return the response body.
        Error responses raise :class:`dynamod.ipc.client.RemoteError`."""
        with self.client(timeout) as c:
            return c.request(type, body or {}).body

    def status(self, name: str) -> dict[str, Any]:
        return self.request("ServiceStatus", {"name": name})["service"]

    def services(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        offset: int | None = 0
        with self.client() as c:
            while offset is not None:
                body = c.request("ListServices", {"offset": offset}).body
                out.update((s["name"], s) for s in body["services"])
                offset = body.get("next")
        return out

    def wait_state(
        self, name: str, states: str | Iterable[str], timeout: float = 15.0
    ) -> dict[str, Any]:
        """Poll until service ``name`` is in one of ``states``; return its
        status. Raises TimeoutError with the manager's log otherwise."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        info: dict[str, Any] = {}
        while time.monotonic() < deadline:
            info = self.status(name)
            if info["state"] in wanted:
                return info
            time.sleep(0.02)
        raise TimeoutError(
            f"{name} is {info.get('state')!r} ({info.get('reason')}), not {sorted(wanted)}\n{self.log()}"
        )

    def wait_for(self, predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.02)
        raise TimeoutError(f"timed out waiting for {what}\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (ordered shutdown of all services) and wait for exit."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def __enter__(self) -> Svmgr:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
