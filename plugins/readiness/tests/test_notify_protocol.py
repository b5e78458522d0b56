"""The notify detector in-process: real datagram sockets, real descriptors
and a real event loop, with a recording stand-in for the host's service
context, for the protocol corners a service manager cannot easily show."""

from __future__ import annotations

import array
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from dynamod_readiness import plugin
from dynamod_readiness.notify import NotifyDetector
from dynamod_readiness.notify_socket import MAX_MESSAGE, choose_address, parse_fields

from dynamod.api import ReadinessFailed, SpawnSpec
from dynamod.config.model import ReadinessConfig, ServiceConfig


class Ctx:
    """Records what the detector asks of the host."""

    def __init__(
        self,
        runtime_dir: Path,
        options: dict[str, Any] | None = None,
        owned: set[int] | None = None,
    ) -> None:
        self.name = "svc"
        self.runtime_dir = str(runtime_dir)
        self.config = ServiceConfig(
            name="svc",
            exec=("/bin/true",),
            type="notify",
            readiness=ReadinessConfig("notify", 30.0, options or {}),
        )
        self.owned = owned if owned is not None else {os.getpid()}
        self.main_pid: int | None = None
        self.logs: list[str] = []
        self.status_text = ""
        self.substate = ""
        self.failures: list[str] = []
        self.extensions: list[float] = []

    @property
    def pids(self) -> set[int]:
        return set(self.owned)

    def owns_pid(self, pid: int) -> bool:
        return pid in self.owned

    def set_main_pid(self, pid: int) -> None:
        self.main_pid = pid

    def set_status_text(self, text: str) -> None:
        self.status_text = text

    def set_substate(self, text: str) -> None:
        self.substate = text

    def log(self, message: str) -> None:
        self.logs.append(message)

    def fail(self, reason: str) -> None:
        self.failures.append(reason)

    def extend_timeout(self, seconds: float) -> None:
        self.extensions.append(seconds)


Scenario = Callable[[NotifyDetector, Ctx, Callable[..., Awaitable[None]]], Awaitable[None]]


def run(
    tmp_path: Path,
    scenario: Scenario,
    options: dict[str, Any] | None = None,
    owned: set[int] | None = None,
) -> Ctx:
    ctx = Ctx(tmp_path, options, owned)

    async def main() -> None:
        det = NotifyDetector(ctx)  # type: ignore[arg-type]
        spec = SpawnSpec(argv=["/bin/true"], env={"WATCHDOG_PID": "1"})
        det.prepare(spec)
        address = spec.env["NOTIFY_SOCKET"]
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

        async def send(text: str | bytes, fds: list[int] = ()) -> None:  # type: ignore[assignment]
            data = text.encode() if isinstance(text, str) else text
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            sender.sendmsg([data], anc, 0, address)
            await asyncio.sleep(0.05)  # let the loop deliver it

        try:
            assert "WATCHDOG_PID" not in spec.env
            await scenario(det, ctx, send)
        finally:
            sender.close()
            det.close()

    asyncio.run(main())
    return ctx


async def until(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    """Let the loop run until ``predicate()`` is true (a hang guard, not a
    speed limit: ``timeout`` is generous)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_parse_fields() -> None:
    assert parse_fields(b"READY=1\nSTATUS=a=b\nnot an assignment\n=x\nSTATUS=last") == {
        "READY": "1",
        "STATUS": "last",
    }
    assert parse_fields(b"STATUS=caf\xc3\xa9") == {"STATUS": "café"}


def test_address_falls_back_to_abstract(tmp_path: Path) -> None:
    assert choose_address(str(tmp_path), "web") == f"{tmp_path}/notify/web.sock"
    deep = "/" + "d" * 120
    address = choose_address(deep, "web")
    assert address.startswith("@dynamod-notify/") and address.endswith("/web")
    assert len(address.encode()) <= 107


def test_ready_and_status_with_kernel_credentials(tmp_path: Path) -> None:
    # The sender attaches no credentials; SO_PASSCRED supplies its PID.
    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        await send("STATUS=starting")
        assert ctx.status_text == "starting"
        await send("READY=1\nSTATUS=up")
        await asyncio.wait_for(det.wait(), 10)
        assert ctx.status_text == "up"

    run(tmp_path, scenario)


def test_socket_file_mode_and_cleanup(tmp_path: Path) -> None:
    path = tmp_path / "notify" / "svc.sock"
    path.parent.mkdir()
    path.write_text("stale")  # left over by a crashed manager

    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        assert path.is_socket()
        assert path.stat().st_mode & 0o777 == 0o666
        assert path.parent.stat().st_mode & 0o777 == 0o755

    run(tmp_path, scenario)
    assert not path.exists()


def test_descriptors_are_closed_at_once(tmp_path: Path) -> None:
    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        await send("FDSTORE=1\nFDNAME=state", [w1])
        await send("BARRIER=1", [w2])
        os.close(w1)
        os.close(w2)
        # Our copies are closed: EOF means the manager closed its own too.
        assert os.read(r1, 1) == b"" and os.read(r2, 1) == b""
        os.close(r1)
        os.close(r2)

    ctx = run(tmp_path, scenario)
    assert ctx.logs == ["notify: the fd store is not supported; closed 1 descriptor(s)"]


def test_oversized_message_is_dropped(tmp_path: Path) -> None:
    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        await send(b"READY=1\nSTATUS=" + b"x" * MAX_MESSAGE)
        assert not det._ready.is_set()

    ctx = run(tmp_path, scenario)
    assert ctx.logs == [
        f"notify: dropped a message from pid {os.getpid()}: longer than {MAX_MESSAGE} bytes"
    ]


def test_foreign_sender_dropped_and_logged_once(tmp_path: Path) -> None:
    senders: list[int] = []

    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        # A separate process (in-process, our own PID would be the
        # "manager's" and count): one sender, several messages.
        script = "import os, socket, sys\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        script += "print(os.getpid(), flush=True)\n"
        script += "for m in sys.argv[2:]: s.sendto(m.encode(), sys.argv[1])\n"
        address = det.sock.address  # type: ignore[union-attr]
        messages = ["READY=1\nSTATUS=forged\nMAINPID=2"] * 3 + ["BARRIER=1"]
        out = subprocess.run(
            [sys.executable, "-c", script, address, *messages], capture_output=True, text=True
        )
        senders.append(int(out.stdout))
        await until(lambda: ctx.logs)  # the first one read, and refused
        assert not det._ready.is_set() and ctx.status_text == "" and ctx.main_pid is None

    ctx = run(tmp_path, scenario, owned=set())
    assert ctx.logs == [
        f"notify: ignoring messages from pid {senders[0]} (uid {os.getuid()}): "
        "not a process of this service (MAINPID, READY, STATUS)"
    ]


def test_the_managers_own_pid_is_accepted(tmp_path: Path) -> None:
    # What a root systemd-notify exec'd by the service sends (its parent's
    # PID): here the test process plays the manager, and sends itself.
    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        await send("READY=1\nSTATUS=from the manager's pid")
        await asyncio.wait_for(det.wait(), 10)

    ctx = run(tmp_path, scenario, owned=set())
    assert ctx.status_text == "from the manager's pid" and ctx.logs == []


def test_sender_in_the_service_session_is_accepted(tmp_path: Path) -> None:
    # The host starts each service in its own session: a child the service
    # started (an unprivileged systemd-notify, say) is in that session.
    leader = subprocess.Popen(["sh", "-c", "sleep 10 & wait"], start_new_session=True)
    try:
        children = Path(f"/proc/{leader.pid}/task/{leader.pid}/children")
        deadline = time.monotonic() + 10
        while not children.read_text().split() and time.monotonic() < deadline:
            time.sleep(0.01)
        child = int(children.read_text().split()[0])

        async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
            assert not ctx.owns_pid(child)
            assert det._is_ours(child)  # its session is led by the service
            assert not det._is_ours(os.getpid())  # ours is not

        run(tmp_path, scenario, owned={leader.pid})
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_mainpid(tmp_path: Path) -> None:
    daemon = subprocess.Popen(["sleep", "10"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:

        async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
            await send("ERRNO=99999999999999999999\nSTATUS=still applied")
            assert ctx.status_text == "still applied"
            for bad in ("abc", "0", "1", "-5", "99999999999999999999", str(gone.pid)):
                await send(f"MAINPID={bad}")
            assert ctx.main_pid is None
            # Root may name any existing process; READY=1 in the same
            # datagram is applied after it.
            await send(f"MAINPID={daemon.pid}\nREADY=1")
            assert ctx.main_pid == daemon.pid

        ctx = run(tmp_path, scenario)
    finally:
        daemon.kill()
        daemon.wait()
    assert ctx.logs[:6] == [
        "notify: ignoring invalid MAINPID='abc'",
        "notify: ignoring invalid MAINPID='0'",
        "notify: ignoring invalid MAINPID='1'",
        "notify: ignoring invalid MAINPID='-5'",
        "notify: ignoring invalid MAINPID='99999999999999999999'",
        f"notify: ignoring MAINPID={gone.pid}: no such process",
    ]


def test_extend_reloading_stopping(tmp_path: Path) -> None:
    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        await send("EXTEND_TIMEOUT_USEC=2500000")
        assert ctx.extensions == [2.5]
        await send("READY=1")
        await send("RELOADING=1")
        assert ctx.substate == "reloading"
        await send("READY=1")
        assert ctx.substate == ""
        await send("STOPPING=1")
        assert ctx.substate == "stopping"

    run(tmp_path, scenario)


def test_watchdog_keeps_running_after_ready(tmp_path: Path) -> None:
    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        await send("READY=1")
        await det.wait()
        # 1.5 s of pings against a 1 s watchdog; one every 0.1 s leaves a
        # busy machine 0.9 s to be late by.
        for _ in range(15):
            await send("WATCHDOG=1")
            await asyncio.sleep(0.05)
        assert ctx.failures == []
        await until(lambda: ctx.failures)  # then, without pings, it fires
        assert ctx.failures == ["watchdog timeout: no WATCHDOG=1 within 1s"]
        assert det.status()["watchdog"] == "1s"

    run(tmp_path, scenario, options={"watchdog": "1s"})


def test_watchdog_usec_at_run_time(tmp_path: Path) -> None:
    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        await send("READY=1")
        await send("WATCHDOG_USEC=200000")
        await until(lambda: ctx.failures)
        assert ctx.failures == ["watchdog timeout: no WATCHDOG=1 within 200ms"]

    run(tmp_path, scenario)


def test_watchdog_stops_at_close(tmp_path: Path) -> None:
    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        await send("READY=1")
        det.close()
        await asyncio.sleep(0.4)

    ctx = run(tmp_path, scenario, options={"watchdog": "200ms"})
    assert ctx.failures == []


def test_trigger_before_ready_fails_the_wait(tmp_path: Path) -> None:
    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        await send("WATCHDOG=trigger")
        with pytest.raises(ReadinessFailed, match="WATCHDOG=trigger"):
            await asyncio.wait_for(det.wait(), 10)
        assert ctx.failures == []  # the host fails the start, not ctx.fail

    run(tmp_path, scenario)


def test_status_hook(tmp_path: Path) -> None:
    async def scenario(det: NotifyDetector, ctx: Ctx, send: Any) -> None:
        await send("ERRNO=13")
        extra = plugin.dynamod_service_status(ctx)
        assert extra == {
            "notify-socket": f"{tmp_path}/notify/svc.sock",
            "watchdog": "5s",
            "status-errno": 13,
        }

    ctx = run(tmp_path, scenario, options={"watchdog": "5s"})
    assert plugin.dynamod_service_status(ctx) is None  # unregistered at close
