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

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
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

    def remove_supervisor(self, name: str) -> None:
        (self.root / "supervisors" / f"{name}.toml").unlink()


def install_plugin(site: str | os.PathLike[str], dist: str, module: str, source: str,
                   entry: str | None = None, group: str = "dynamod") -> None:
    """Install a plugin distribution the way pip leaves one: ``module.py``
    with ``source`` (dedented) and a ``*.dist-info`` declaring one entry
    point ``entry`` (default: ``dist``) in ``group``. Put ``site`` on
    PYTHONPATH of the process that should find it."""
    root = Path(site)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry or dist} = {module}\n")


def stamp(path: str | os.PathLike[str], label: str) -> str:
    """A shell command appending ``LABEL <wall-clock ns>`` to ``path``: let
    test services record what happened to them and when (appends of one
    short line are atomic, so many services may share one file)."""
    return f"echo \"{label} $(date +%s%N)\" >> '{path}'"


def read_stamps(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """The ``(label, ns)`` pairs written by :func:`stamp`, in file order."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out: list[tuple[str, int]] = []
    for line in text.splitlines():
        label, _, ns = line.rpartition(" ")
        if label and ns.isdigit():
            out.append((label, int(ns)))
    return out


def wait_stamps(
    path: str | os.PathLike[str], labels: Iterable[str], timeout: float = 15.0
) -> list[tuple[str, int]]:
    """Wait until each of ``labels`` has been stamped into ``path``; return
    all stamps. Typical use: a service stamps ``NAME up`` after installing
    its signal traps, and the test waits for that before signalling it (a
    service is *running* as soon as it is spawned, before its shell has run
    a single line)."""
    wanted = set(labels)
    deadline = time.monotonic() + timeout
    while True:
        stamps = read_stamps(path)
        missing = wanted - {label for label, _ in stamps}
        if not missing:
            return stamps
        if time.monotonic() > deadline:
            raise TimeoutError(f"no stamp {sorted(missing)} in {path} after {timeout}s")
        time.sleep(0.02)


def first_stamp(stamps: Iterable[tuple[str, int]], label: str) -> int:
    """The time of the first stamp called ``label`` (KeyError if none)."""
    for lab, ns in stamps:
        if lab == label:
            return ns
    raise KeyError(label)


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Fail with TimeoutError instead of hanging: SIGALRM interrupts the
    body (even a blocking open() of a FIFO) after ``seconds``. Main thread
    only."""

    def alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{what}: still running after {seconds}s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 15.0,
               interval: float = 0.02, context: Callable[[], str] | None = None) -> Any:
    """Poll ``predicate`` until it returns something true and return that;
    TimeoutError naming ``what`` (and ``context()``, a log say) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}" + (f"\n{context()}" if context else ""))


def deps(**kinds: list[str]) -> str:
    """A ``[dependencies]`` table for ``ConfigTree.simple(extra=...)``:
    ``deps(requires=["db"], after=["net"])``."""
    return "[dependencies]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in kinds.items())


def recording(rec: str | os.PathLike[str], name: str, stop_delay: float = 0.0) -> str:
    """A long-running service script stamping ``NAME start`` into ``rec``
    once its TERM trap is set, then ``NAME term`` and ``NAME exit`` when
    stopped (``stop_delay`` seconds apart)."""
    return (
        f"trap '{stamp(rec, name + ' term')}; sleep {stop_delay}; {stamp(rec, name + ' exit')}; exit 0' TERM; "
        f"{stamp(rec, name + ' start')}; "
        "while :; do sleep 0.05; done"
    )


def started(rec: str | os.PathLike[str], *names: str) -> list[tuple[str, int]]:
    """Wait until each of ``names`` stamped ``start`` (see :func:`recording`)."""
    return wait_stamps(rec, [n + " start" for n in names])


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :][:1] not in (b"Z", b"X")


_TRANSITION = re.compile(r"dynamod-svmgr: (?P<name>\S+): (?P<old>[a-z-]+) -> (?P<new>[a-z-]+)(?: \((?P<reason>.*)\))?$")


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
        python: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config_dir = Path(config_dir)
        self.runtime_dir = Path(runtime_dir)
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.runtime_dir / "control.sock")
        self.log_path = self.runtime_dir / "svmgr.log"
        self.env = dict(os.environ if env is None else env)
        self.args = list(args)
        # Another environment's interpreter runs the manager with the plugins
        # installed there (testing an installed distribution in a fresh venv).
        self.python = str(python) if python is not None else sys.executable
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self, timeout: float = 15.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept for the process lifetime
        self.proc = subprocess.Popen(
            [
                self.python,
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
                self.sweep()
                raise RuntimeError(f"dynamod-svmgr exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with Client(self.socket, timeout=5) as c:
                    c.request("ListServices")
                return
            except (ConnectError, OSError):
                time.sleep(0.02)
        log = self.log()
        # Not left behind with its services: the caller never got this
        # object to stop (a fixture only tracks managers that started; a
        # timed-out 5,000-service start left 5,000 orphans per run).
        try:
            self.stop(timeout=60)
        except Exception:
            self.proc.kill()
            self.proc.wait()
            self.sweep()
        raise TimeoutError(f"dynamod-svmgr did not open {self.socket}:\n{log}")

    def sweep(self) -> int:
        """SIGKILL every process this manager instance spawned that is still
        alive (found by the INVOCATION_ID prefix svmgr gives its services);
        for a manager that died or was killed before stopping them. Returns
        how many were killed."""
        try:
            prefix = (self.runtime_dir / "instance").read_text().strip()
        except OSError:
            return 0
        if len(prefix) != 16:
            return 0
        needle = f"\0INVOCATION_ID={prefix}".encode()
        killed = 0
        for _ in range(3):  # a service may fork while being swept
            found = 0
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/environ", "rb") as f:
                        env = b"\0" + f.read()
                except OSError:
                    continue
                if needle in env:
                    try:
                        os.kill(int(entry), signal.SIGKILL)
                        found += 1
                    except OSError:
                        pass
            killed += found
            if not found:
                break
        return killed

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def transitions(self, name: str | None = None) -> list[tuple[str, str, str, str]]:
        """Every state transition the manager logged so far, in order, as
        ``(name, old, new, reason)``; only those of ``name`` if given."""
        out = []
        for line in self.log().splitlines():
            m = _TRANSITION.search(line)
            if m and (name is None or m["name"] == name):
                out.append((m["name"], m["old"], m["new"], m["reason"] or ""))
        return out

    def logs(self, name: str) -> list[str]:
        """The lines ``GetLogs`` returns for a service (text only)."""
        return [text for _ts, text in self.request("GetLogs", {"name": name})["lines"]]

    def wait_logs(self, name: str, needle: str, timeout: float = 15.0) -> list[str]:
        """Wait until a line of the service's captured output contains
        ``needle``; return all its lines."""
        return self.wait_for(
            lambda: (lines := self.logs(name)) and any(needle in x for x in lines) and lines,
            timeout,
            f"{needle!r} in the output of {name}",
        )

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the manager to exit on its own; return its exit code."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"dynamod-svmgr did not exit\n{self.log()}") from None

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
        return wait_until(predicate, what, timeout, context=self.log)

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
                self.sweep()
                raise
        if self.proc.returncode != 0:
            self.sweep()  # it died (or was killed) without stopping everything
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
                self.sweep()


FOREVER = "trap 'exit 0' TERM; while :; do sleep 0.1; done"  # a simple service's script


def ctl_env(**extra: str) -> dict[str, str]:
    """The environment for :func:`ctl`: without DYNAMOD_SOCKET and NO_COLOR."""
    env = {k: v for k, v in os.environ.items() if k not in ("DYNAMOD_SOCKET", "NO_COLOR")}
    env.update(extra)
    return env


def ctl(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``dynamodctl ARGS...`` as a whole process, through its entry point."""
    return subprocess.run(
        [sys.executable, "-m", "dynamod.ctl.main", *args],
        capture_output=True,
        text=True,
        env=env or ctl_env(),
        timeout=timeout,
    )


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    """The one ``dynamodctl: ...`` line a failed command wrote to stderr."""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("dynamodctl: ")
    assert "Traceback" not in r.stderr
    return lines[0]


class Managers:
    """Several :class:`Svmgr` on one config tree, all stopped by
    :meth:`stop_all` (what a test fixture needs): calling it starts one, in
    ``work/runN`` unless ``runtime_dir`` is given."""

    def __init__(self, tree: ConfigTree, work: str | os.PathLike[str]) -> None:
        self.tree = tree
        self.work = Path(work)
        self.started: list[Svmgr] = []

    def __call__(self, runtime_dir: str | os.PathLike[str] | None = None, **kw: Any) -> Svmgr:
        rt = runtime_dir if runtime_dir is not None else self.work / f"run{len(self.started)}"
        mgr = Svmgr(self.tree.root, rt, **kw)
        self.started.append(mgr)
        return mgr

    def stop_all(self) -> None:
        for mgr in self.started:
            try:
                mgr.stop()
            except Exception:
                pass


def manager_fixtures() -> tuple[Any, Any]:
    """The ``tree`` (a :class:`ConfigTree` under ``tmp_path``) and ``svmgr``
    (``svmgr(**kw)`` starts a manager on ``tree``, all stopped after the
    test; ``runtime_dir=`` overrides the default runtime directory) pytest
    fixtures. In a conftest: ``tree, svmgr = manager_fixtures()``. pytest
    is imported only here: this module also serves scripts without it."""
    import pytest

    @pytest.fixture
    def tree(tmp_path: Path) -> ConfigTree:
        return ConfigTree(tmp_path / "etc")

    @pytest.fixture
    def svmgr(tmp_path: Path, tree: ConfigTree) -> Any:
        managers = Managers(tree, tmp_path)
        yield managers
        managers.stop_all()

    return tree, svmgr


class InitContainer:
    """``dynamod-init --container`` as PID 1 of a new PID + mount namespace
    (``unshare``; needs root), with its own /run. Services contributed by
    installed plugins are left out unless ``plugin_services=True``. Its
    output (init's and svmgr's logs) goes to ``log_path``, or to the
    descriptor ``stdio`` (a terminal, say); :meth:`run` executes a command
    inside the namespaces with ``nsenter``."""

    def __init__(
        self,
        config_dir: str | os.PathLike[str],
        work: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] = (),
        plugin_services: bool = False,
        stdio: int | None = None,
    ) -> None:
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_path = self.work / "init.log"
        full_env = dict(os.environ)
        # Services that installed plugins contribute (the systemd1 bridge...)
        # only where a test asks for them: a test's system is its config.
        full_env["DYNAMOD_PLUGIN_SERVICES"] = "1" if plugin_services else "0"
        full_env.update(env or {})
        script = (
            "mount -t tmpfs tmpfs /run && "
            f"exec {sys.executable} -m dynamod.init.main --container "
            f"--config-dir {config_dir} --runtime-dir /run/dynamod {' '.join(args)}"
        )
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept for the process lifetime
        out = log if stdio is None else stdio
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private",
             "/bin/sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=full_env,
        )
        log.close()
        self.pid = self._find_init()

    def _find_init(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except OSError:
                children = []
            if children:
                return int(children[0])
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"init did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def run(self, *argv: str, timeout: float = 30.0, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (mount + PID namespace)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", *argv],
            capture_output=True, text=True, timeout=timeout, check=check,
        )

    def request(self, type: str, body: dict[str, Any] | None = None) -> Any:
        """A control request to the svmgr inside, through /proc/PID/root."""
        with Client(f"/proc/{self.pid}/root/run/dynamod/control.sock", timeout=60) as c:
            return c.request(type, body or {}).body

    def processes(self) -> list[int]:
        """Host PIDs of the live (non-zombie) processes inside the container."""
        ns = os.readlink(f"/proc/{self.pid}/ns/pid")
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                    continue
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat[stat.rindex(b")") + 2:][:1] != b"Z":
                out.append(int(entry))
        return out

    def service_processes(self) -> dict[str, list[int]]:
        """Host PIDs of each service's processes (by the DYNAMOD_SERVICE
        marker in their environment)."""
        found: dict[str, list[int]] = {}
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            for item in env:
                if item.startswith(b"DYNAMOD_SERVICE="):
                    found.setdefault(item[16:].decode(), []).append(pid)
        return found

    def svmgr_pid(self) -> int | None:
        """Host PID of the running dynamod-svmgr, if any."""
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"dynamod.svmgr" in cmd or b"dynamod-svmgr" in cmd:
                return pid
        return None

    def wait_log(self, text: str, timeout: float = 20.0, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if log.count(text) >= count:
                return log
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} (x{count}) not in the log:\n{self.log()}")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def __enter__(self) -> InitContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            # Killing the namespace's PID 1 kills everything inside it.
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@contextlib.contextmanager
def public_dir() -> Iterator[Path]:
    """A fresh directory every user can reach (pytest's ``tmp_path`` is
    private to root): for control sockets an unprivileged attacker must be
    able to connect to. Removed afterwards."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="dynamod-public-", dir="/tmp"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_ATTACK = r'''
import os, select, socket, sys, time
path, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
req = bytes.fromhex(sys.argv[4])
socks, refused = [], 0
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # blocking: a full backlog makes connect wait (with a timeout it
    # would fail with EAGAIN at once, AF_UNIX has no EINPROGRESS)
    try:
        s.connect(path)
        s.setblocking(False)
    except OSError:
        refused += 1
        s.close()
        continue
    try:
        if mode == "garbage":
            s.send(b"XX this is no frame")  # the server closes it: open another
            s.close()
            continue
        if mode == "slow":
            s.send(req[:3])  # a frame begun and never finished
        elif mode == "unread":
            for _ in range(64):
                s.send(req)  # requests whose answers are never read
    except OSError:
        pass
    socks.append(s)
time.sleep(float(os.environ.get("ATTACK_SETTLE", "1")))
alive = 0
for s in socks:
    p = select.poll()
    p.register(s, select.POLLIN)
    try:
        if p.poll(0) and not s.recv(1 << 16, socket.MSG_PEEK):
            continue
        alive += 1
    except BlockingIOError:
        alive += 1
    except OSError:
        continue
print(f"opened {len(socks)} refused {refused} alive {alive}", flush=True)
sys.stdin.read()  # hold everything until the test closes our stdin
'''


class Attacker:
    """``n`` connections to the control socket ``path``, opened and held by
    an unprivileged user (``setpriv``; uid 65534 by default) in a child
    process with room for that many descriptors. ``mode``: ``hold`` (connect
    and say nothing), ``slow`` (start a frame, never finish it), ``unread``
    (send ``request`` 64 times, never read the answers) or ``garbage`` (send
    a line of text and close, ``n`` times). :attr:`report` is
    the child's ``opened N refused R alive A`` line (alive: not yet closed
    by the server a moment after opening); :meth:`close` lets go."""

    def __init__(self, path: str, n: int, mode: str = "hold", *, uid: int = 65534,
                 settle: float = 1.0, request: str = "ListServices") -> None:
        from dynamod.ipc.framing import encode_frame

        frame = encode_frame({"id": 1, "kind": "request", "type": request, "body": {}})
        self.proc = subprocess.Popen(
            ["prlimit", f"--nofile={n + 64}:{n + 64}", "setpriv", f"--reuid={uid}", f"--regid={uid}",
             "--clear-groups", sys.executable, "-c", _ATTACK, path, str(n), mode, frame.hex()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, ATTACK_SETTLE=str(settle)),
        )
        assert self.proc.stdout is not None
        self.report = self.proc.stdout.readline().strip()
        if not self.report:
            self.proc.wait(10)
            raise RuntimeError(f"the attacker exited with {self.proc.returncode}")
        numbers = self.report.split()
        self.opened, self.refused, self.alive = int(numbers[1]), int(numbers[3]), int(numbers[5])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Attacker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
