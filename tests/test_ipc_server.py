"""ControlServer, Client and AsyncClient over real Unix sockets.

The server runs on its own event loop in a background thread, so the blocking
client (and raw sockets sending deliberately broken bytes) can be used from the
test thread exactly as dynamodctl uses them.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from dynamod.ipc.aclient import AsyncClient
from dynamod.ipc.client import (
    Client,
    ConnectError,
    ProtocolError,
    RemoteError,
    default_socket_path,
)
from dynamod.ipc.framing import FrameDecoder, encode_frame
from dynamod.ipc.schema import PROTOCOL_VERSION, Message, event, response
from dynamod.ipc.server import Connection, ControlServer
from dynamod.testing import Attacker, public_dir, wait_until

BIG = "x" * 50_000  # one event of ~50 KB


def state_event(name: str, extra: str = "") -> Message:
    body = {"name": name, "old": "starting", "new": "running", "reason": "", "time": time.time()}
    if extra:
        body["service"] = {"blob": extra}
    return event("ServiceStateChanged", body)


class Handler:
    """A toy service manager: enough behaviour to exercise the server."""

    def __init__(self) -> None:
        self.gate = threading.Event()  # releases StartService("slow")
        self.seen: list[tuple[str, Connection]] = []
        self.server: ControlServer | None = None

    async def __call__(self, conn: Connection, msg: Message) -> Message | None:
        self.seen.append((msg.type, conn))
        body = msg.body
        if msg.type == "ListServices":
            return response(msg, "ServiceList", {"services": [{"name": "a"}, {"name": "b"}]})
        if msg.type == "StartService":
            if body["name"] == "slow":
                while not self.gate.is_set():
                    await asyncio.sleep(0.005)
            return response(msg, "Ack", {"message": f"started {body['name']}"})
        if msg.type == "ServiceStatus":
            peer = [conn.peer_pid, conn.peer_uid, conn.peer_gid]
            return response(msg, "ServiceInfo", {"service": {"name": body["name"], "peer": peer}})
        if msg.type == "Subscribe":
            conn.subscribed = True
            return response(msg, "Ack")
        if msg.type == "Reload":  # floods subscribers with ~3 MB of events
            assert self.server is not None
            for i in range(60):
                self.server.broadcast(state_event(f"s{i}", BIG))
            return response(
                msg, "ReloadResult", {"added": [], "removed": [], "changed": [], "warnings": []}
            )
        if msg.type == "RestartService":  # an event overtakes the response
            assert self.server is not None
            self.server.broadcast(state_event(body["name"]))
            return response(msg, "Ack")
        if msg.type == "StopService":  # answered from another thread
            threading.Thread(
                target=conn.send, args=(response(msg, "Ack", {"message": "from thread"}),)
            ).start()
            return None
        if msg.type == "GetServiceByPid":
            raise RuntimeError("handler bug")
        if msg.type == "TreeStatus":  # far over the 64 KiB frame limit
            return response(msg, "Tree", {"root": {"blob": "y" * 100_000}})
        return response(msg, "Ack")


class ServerThread:
    def __init__(self, path: str, **kwargs: object) -> None:
        self.handler = Handler()
        self.logs: list[str] = []
        self.server = ControlServer(path, self.handler, log=self.logs.append, **kwargs)  # type: ignore[arg-type]
        self.handler.server = self.server
        self.path = path
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def call(self, fn, *args):  # run fn on the loop thread, return its result
        async def wrapper():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(5)

    def stop(self, release: bool = True) -> None:
        if release:
            self.handler.gate.set()
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def srv(tmp_path) -> Iterator[ServerThread]:
    st = ServerThread(str(tmp_path / "run" / "control.sock")).start()
    yield st
    st.stop()


class Raw:
    """A raw socket speaking (or deliberately mis-speaking) the protocol."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.decoder = FrameDecoder()
        self.pending: list[dict] = []

    def send_payload(self, payload: dict) -> None:
        self.sock.sendall(encode_frame(payload))

    def recv(self) -> Message:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "server closed the connection"
            self.pending.extend(self.decoder.feed(data))
        return Message.from_payload(self.pending.pop(0))

    def wait_closed(self, limit: int = 10_000_000) -> int:
        """Read until the server closes; return how many bytes came."""
        total = 0
        while total < limit:
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return total
            if not data:
                return total
            total += len(data)
        raise AssertionError("connection not closed")

    def close(self) -> None:
        self.sock.close()


def req(id_: int, type_: str, body: dict) -> dict:
    return {"id": id_, "kind": "request", "type": type_, "body": body}


def test_blocking_client_roundtrip(srv: ServerThread) -> None:
    with Client(srv.path, timeout=5) as client:
        assert client.hello("test") == PROTOCOL_VERSION
        reply = client.request("ListServices")
        assert reply.type == "ServiceList" and reply.kind == "response"
        assert [s["name"] for s in reply.body["services"]] == ["a", "b"]
        assert client.request("StartService", {"name": "x"}).body == {"message": "started x"}
    conn = srv.handler.seen[-1][1]
    assert conn.client_name == "test" and conn.client_version == PROTOCOL_VERSION


def test_hello_with_unknown_version(srv: ServerThread) -> None:
    with Client(srv.path, timeout=5) as client:
        with pytest.raises(RemoteError) as info:
            client.request("Hello", {"version": 99, "client": "future"})
        assert info.value.code == "unsupported-version"
        assert "99" in info.value.message
        assert client.request("ListServices").type == "ServiceList"  # still open


BAD_STREAMS = {
    "bad-magic": b"XX\x05\x00\x00\x00hello",
    "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "oversize-length": b"DM" + struct.pack("<I", 65537),
    "huge-length": b"DM\xff\xff\xff\xff",
    "non-map-payload": b"DM" + struct.pack("<I", 4) + msgpack.packb([1, 2, 3]),
    "undecodable": b"DM\x01\x00\x00\x00\xc1",
    "no-envelope": encode_frame({"hello": "world"}),
    "truncated-then-eof": b"DM" + struct.pack("<I", 100) + b"0123456789",
}


@pytest.mark.parametrize("name", list(BAD_STREAMS))
def test_bad_stream_closes_only_that_connection(srv: ServerThread, name: str) -> None:
    with Client(srv.path, timeout=5) as bystander:
        assert bystander.request("ListServices").type == "ServiceList"
        bad = Raw(srv.path)
        bad.sock.sendall(BAD_STREAMS[name])
        if name == "truncated-then-eof":
            bad.sock.shutdown(socket.SHUT_WR)
        assert bad.wait_closed() == 0
        bad.close()
        # The other client, and new ones, are unaffected.
        assert bystander.request("ListServices").type == "ServiceList"
    with Client(srv.path, timeout=5) as fresh:
        assert fresh.request("ListServices").type == "ServiceList"
    assert any("protocol error" in line for line in srv.logs), srv.logs


def test_bad_request_keeps_connection_open(srv: ServerThread) -> None:
    raw = Raw(srv.path)
    raw.send_payload(req(1, "StartService", {}))
    reply = raw.recv()
    assert (reply.type, reply.re, reply.body["code"]) == ("Error", 1, "bad-request")
    assert "missing required field 'name'" in reply.body["message"]
    raw.send_payload(req(2, "Frobnicate", {}))
    reply = raw.recv()
    assert (
        reply.body["code"] == "bad-request"
        and "unknown request type 'Frobnicate'" in reply.body["message"]
    )
    raw.send_payload(req(3, "GetServiceByPid", {"pid": "12"}))
    assert "'pid' must be int" in raw.recv().body["message"]
    raw.send_payload(req(4, "ListServices", {}))
    reply = raw.recv()
    assert (reply.type, reply.re) == ("ServiceList", 4)
    raw.close()


def test_slow_request_does_not_block_others_on_same_connection(srv: ServerThread) -> None:
    raw = Raw(srv.path)
    raw.send_payload(req(1, "StartService", {"name": "slow"}))
    raw.send_payload(req(2, "ListServices", {}))
    raw.send_payload(req(3, "StartService", {"name": "fast"}))
    first, second = raw.recv(), raw.recv()
    assert {first.re, second.re} == {2, 3}
    srv.handler.gate.set()
    last = raw.recv()
    assert (last.re, last.body["message"]) == (1, "started slow")
    raw.close()


def test_inflight_limit_pauses_reading_without_losing_requests(tmp_path) -> None:
    st = ServerThread(str(tmp_path / "c.sock"), max_inflight=2).start()
    try:
        raw = Raw(st.path)
        for i in range(1, 8):
            raw.send_payload(req(i, "StartService", {"name": "slow"}))

        def starts() -> int:
            return len([t for t, _ in st.handler.seen if t == "StartService"])

        wait_until(lambda: starts() >= 2, "two handlers running")
        # A round trip on another connection: handlers for the other five,
        # had the server started them, would have begun by then.
        with Client(st.path, timeout=5) as other:
            assert other.request("ListServices").type == "ServiceList"
        assert starts() == 2
        st.handler.gate.set()
        assert sorted(raw.recv().re for _ in range(7)) == list(range(1, 8))
        raw.close()
    finally:
        st.stop()


def test_half_close_still_gets_answers(srv: ServerThread) -> None:
    raw = Raw(srv.path)
    raw.send_payload(req(1, "StartService", {"name": "slow"}))
    raw.sock.shutdown(socket.SHUT_WR)
    # The server has seen the end of input before the answer is ready.
    wait_until(lambda: srv.call(lambda: any(c._eof for c in srv.server.connections)), "EOF seen")
    srv.handler.gate.set()
    assert raw.recv().re == 1
    assert raw.wait_closed() == 0
    raw.close()


def test_peer_credentials(srv: ServerThread) -> None:
    with Client(srv.path, timeout=5) as client:
        service = client.request("ServiceStatus", {"name": "a"}).body["service"]
    assert service["peer"] == [os.getpid(), os.getuid(), os.getgid()]


def test_handler_exception_becomes_internal_error(srv: ServerThread) -> None:
    with Client(srv.path, timeout=5) as client:
        with pytest.raises(RemoteError) as info:
            client.request("GetServiceByPid", {"pid": 1})
        assert info.value.code == "internal" and "handler bug" in info.value.message
        with pytest.raises(RemoteError) as info:
            client.request("TreeStatus")
        assert info.value.code == "internal" and "exceeds" in info.value.message
        assert client.request("ListServices").type == "ServiceList"
    assert any("RuntimeError: handler bug" in line for line in srv.logs)


def test_send_from_another_thread(srv: ServerThread) -> None:
    with Client(srv.path, timeout=5) as client:
        assert client.request("StopService", {"name": "a"}).body["message"] == "from thread"


def test_subscriber_that_never_reads_is_disconnected(srv: ServerThread) -> None:
    stuck = Raw(srv.path)
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.send_payload(req(1, "Subscribe", {}))
    assert stuck.recv().type == "Ack"
    # Answered (the client's 5 s timeout is the hang guard): the flood to the
    # stuck subscriber does not hold up the server.
    with Client(srv.path, timeout=5) as other:
        assert other.request("Reload").type == "ReloadResult"
        assert other.request("ListServices").type == "ServiceList"
    assert any("not reading" in line for line in srv.logs), srv.logs
    received = stuck.wait_closed()
    assert received < 60 * len(BIG)  # cut off well before the flood ended
    stuck.close()
    wait_until(lambda: srv.call(lambda: len(srv.server.connections)) == 0, "every connection gone")


def test_client_events_and_queueing(srv: ServerThread) -> None:
    with Client(srv.path, timeout=5) as watcher, Client(srv.path, timeout=5) as actor:
        watcher.request("Subscribe")
        # An event broadcast while the watcher waits for its own response is
        # queued, not mistaken for the response.
        assert watcher.request("RestartService", {"name": "mine"}).type == "Ack"
        actor.request("RestartService", {"name": "theirs"})
        events = watcher.events(timeout=5)
        names = [next(events).body["name"], next(events).body["name"]]
        assert names == ["mine", "theirs"]
    # Non-subscribers got nothing.


def test_events_end_when_server_closes(tmp_path) -> None:
    st = ServerThread(str(tmp_path / "c.sock")).start()
    client = Client(st.path, timeout=5)
    client.request("Subscribe")
    st.stop()
    assert list(client.events(timeout=5)) == []
    with pytest.raises(ProtocolError):
        client.request("ListServices")


def test_connect_errors(tmp_path, monkeypatch) -> None:
    missing = str(tmp_path / "nope.sock")
    with pytest.raises(ConnectError) as info:
        Client(missing)
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.ENOENT
    assert missing in str(info.value) and "No such file or directory" in str(info.value)
    # A socket file nobody listens on (a dead server's leftover).
    dead = str(tmp_path / "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(dead)
    s.close()
    with pytest.raises(ConnectError, match="Connection refused") as info:
        Client(dead)
    assert info.value.errno == errno.ECONNREFUSED

    monkeypatch.setenv("DYNAMOD_SOCKET", missing)
    assert default_socket_path() == missing
    monkeypatch.delenv("DYNAMOD_SOCKET")
    assert default_socket_path() == "/run/dynamod/control.sock"


def test_sockets_are_close_on_exec(srv: ServerThread) -> None:
    with Client(srv.path, timeout=5) as client:
        client.request("ListServices")
        conn = srv.handler.seen[-1][1]
        accepted = conn._transport.get_extra_info("socket").fileno()  # type: ignore[union-attr]
        listening = srv.server.sockets[0].fileno()
        inodes = set()
        for fd in (listening, accepted):
            assert not os.get_inheritable(fd)
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            inodes.add(os.readlink(f"/proc/self/fd/{fd}"))
        # A child started the way a careless spawner would (close_fds=False)
        # still sees none of them.
        child = (
            "import os\n"
            "for fd in os.listdir('/proc/self/fd'):\n"
            "    try: print(os.readlink('/proc/self/fd/' + fd))\n"
            "    except OSError: pass\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", child],
            close_fds=False,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert not any(inode in out for inode in inodes), (inodes, out)


def test_socket_file_lifecycle(tmp_path) -> None:
    path = str(tmp_path / "sub" / "ctl.sock")

    async def handler(conn: Connection, msg: Message) -> Message | None:
        return response(msg, "Ack")

    async def main() -> None:
        # A stale socket from a dead server is replaced.
        os.makedirs(os.path.dirname(path))
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()
        server = ControlServer(path, handler, mode=0o600, log=lambda m: None)
        await server.start()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        # A live server is never clobbered.
        second = ControlServer(path, handler, log=lambda m: None)
        with pytest.raises(OSError) as info:
            await second.start()
        assert info.value.errno == errno.EADDRINUSE
        client = await AsyncClient.connect(path, timeout=5)
        assert (await client.request("Reload")).type == "Ack"
        await server.close()
        assert not os.path.exists(path)
        await client.close()
        # Something that is not a socket is left alone.
        with open(path, "w") as f:
            f.write("precious")
        with pytest.raises(FileExistsError):
            await ControlServer(path, handler).start()
        with open(path) as f:
            assert f.read() == "precious"

    asyncio.run(main())


def test_default_mode_is_world_accessible(srv: ServerThread) -> None:
    assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o666


async def reached_the_handler(st: ServerThread, type: str, timeout: float = 15.0) -> None:
    """Until the server's handler has been called with a ``type`` request."""
    deadline = time.monotonic() + timeout
    while not any(t == type for t, _ in st.handler.seen):
        assert time.monotonic() < deadline, f"no {type} reached the handler"
        await asyncio.sleep(0.01)


def test_async_client(srv: ServerThread) -> None:
    async def main() -> None:
        async with await AsyncClient.connect(srv.path, timeout=5) as client:
            assert await client.hello("mimic") == PROTOCOL_VERSION
            slow = asyncio.create_task(client.request("StartService", {"name": "slow"}))
            await reached_the_handler(srv, "StartService")
            listing = await client.request("ListServices")
            assert listing.type == "ServiceList" and not slow.done()
            srv.handler.gate.set()
            assert (await slow).body["message"] == "started slow"
            with pytest.raises(RemoteError) as info:
                await client.request("GetServiceByPid", {"pid": 3})
            assert info.value.code == "internal"
            await client.request("Subscribe")
            await client.request("RestartService", {"name": "svc"})
            events = client.events()
            ev = await asyncio.wait_for(events.__anext__(), 5)
            assert (ev.type, ev.body["name"]) == ("ServiceStateChanged", "svc")
            results = await asyncio.gather(
                *(client.request("ServiceStatus", {"name": str(i)}) for i in range(20))
            )
            assert [r.body["service"]["name"] for r in results] == [str(i) for i in range(20)]
        assert client.closed

        with pytest.raises(ConnectError, match="No such file"):
            await AsyncClient.connect(srv.path + ".missing")

    asyncio.run(main())


def test_async_client_sees_server_going_away(tmp_path) -> None:
    st = ServerThread(str(tmp_path / "c.sock")).start()

    async def main() -> None:
        client = await AsyncClient.connect(st.path, timeout=5)
        await client.request("Subscribe")
        pending = asyncio.create_task(client.request("StartService", {"name": "slow"}))
        await reached_the_handler(st, "StartService")
        await asyncio.get_running_loop().run_in_executor(None, st.stop, False)
        with pytest.raises(ProtocolError):
            await pending
        assert [e async for e in client.events()] == []
        with pytest.raises(ProtocolError):
            await client.request("ListServices")
        await client.close()

    asyncio.run(main())


def test_blocking_client_imports_stay_lean() -> None:
    # dynamodctl start-up: the IPC modules themselves must not pull in asyncio,
    # pluggy, typing or importlib.metadata (whatever the dynamod package does).
    code = (
        "import sys, dynamod\n"
        "before = set(sys.modules)\n"
        "import dynamod.ipc.client\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    added = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "dynamod.ipc.client" in added
    for heavy in ("asyncio", "pluggy", "typing", "importlib.metadata"):
        assert heavy not in added
    framing_only = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, dynamod.ipc.framing; print('dynamod.ipc.schema' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert framing_only.strip() == "False"


# -- client limits (docs/protocol.md, "Client limits") -------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the attacker is uid 65534 (setpriv)")


@pytest.fixture
def public() -> Iterator[Path]:
    with public_dir() as path:
        yield path


def problems(logs: list[str], uid: int) -> tuple[list[str], int]:
    """The log lines about ``uid``'s clients and how many problems they
    account for (a line as it happened is one, a summary says how many)."""
    lines = [line for line in logs if f"uid {uid}" in line]
    total = 0
    for line in lines:
        m = re.search(r"uid \d+: (\d+) more client problems", line)
        total += int(m.group(1)) if m else 1
    return lines, total


def open_count(st: ServerThread) -> int:
    return st.call(lambda: len(st.server.connections))


@needs_root
def test_connections_per_uid_and_in_total_are_capped_but_root_gets_through(public: Path) -> None:
    st = ServerThread(str(public / "c.sock"), max_connections_per_uid=5, max_connections=8,
                      log_interval=0.3).start()
    try:
        with Attacker(st.path, 20, uid=65534) as first, Attacker(st.path, 20, uid=65533) as second:
            assert (first.alive, second.alive) == (5, 3)
            # Root is not counted against either limit.
            clients = [Client(st.path, timeout=10) for _ in range(20)]
            assert all(c.request("ListServices").type == "ServiceList" for c in clients)
            for c in clients:
                c.close()
        wait_until(lambda: any("more client problems" in line for line in st.logs), "the summary")
    finally:
        st.stop()
    refused = [line for line in st.logs if "uid 65534" in line]
    # One line as it happened, one summary: not fifteen.
    assert len(refused) == 2, refused
    assert "connection refused: uid 65534 has 5 connections" in refused[0]
    assert "uid 65534: 14 more client problems" in refused[1] and "connection refused x14" in refused[1]
    assert any("connection refused: 8 connections of other users" in line for line in st.logs)


@needs_root
def test_idle_and_slow_clients_are_dropped_root_is_not(public: Path) -> None:
    st = ServerThread(str(public / "c.sock"), idle_timeout=1.0, slow_timeout=1.0).start()
    try:
        mine = Raw(st.path)  # root, idle all along
        with Attacker(st.path, 10, "hold", settle=0) as idle, Attacker(st.path, 10, "slow", settle=0) as slow:
            assert idle.alive == slow.alive == 10
            wait_until(lambda: open_count(st) == 1, "the attacker's connections closed")
        mine.send_payload(req(1, "ListServices", {}))
        assert mine.recv().re == 1
        mine.close()
    finally:
        st.stop()
    lines, total = problems(st.logs, 65534)
    assert total == 20, lines
    text = "\n".join(lines)
    assert "idle for 1s; disconnecting" in text or "idle x" in text
    assert "began a frame and did not finish it within 1s" in text or "slow x" in text


@needs_root
def test_output_pending_for_one_uid_is_bounded(public: Path) -> None:
    st = ServerThread(str(public / "c.sock"), max_write_buffer_per_uid=1024 * 1024).start()
    try:
        with Attacker(st.path, 10, "unread", request="Subscribe", settle=0.2) as atk:
            assert atk.alive == 10
            wait_until(lambda: open_count(st) == 10, "ten subscribers")
            with Client(st.path, timeout=10) as root:
                root.request("Reload")  # ~3 MB of events to every subscriber
                assert root.request("ListServices").type == "ServiceList"

            def pending() -> int:
                return st.call(lambda: st.server.pending_output(65534))

            assert pending() <= 1024 * 1024 + len(BIG) + 1024
    finally:
        st.stop()
    assert any("its uid's connections have" in line for line in st.logs), st.logs


@needs_root
def test_a_bad_frame_flood_is_logged_as_a_summary(public: Path) -> None:
    st = ServerThread(str(public / "c.sock"), log_interval=0.5).start()
    try:
        with Attacker(st.path, 500, "garbage", settle=0):
            wait_until(lambda: any("more client problems" in line for line in st.logs), "the summary")
    finally:
        st.stop()
    lines, total = problems(st.logs, 65534)
    assert len(lines) <= 6, lines  # about two per interval, not 500
    assert total == 500, lines  # each one counted: closed for bad magic, or refused while 64 were open
    assert "bad magic x" in "\n".join(lines) or "bad magic b'XX'" in lines[0]


def test_the_timestamp_extension_closes_the_connection(srv: ServerThread) -> None:
    payload = msgpack.packb({"id": 1, "kind": "request", "type": "ServiceStatus",
                             "body": {"name": "a", "when": msgpack.Timestamp(1, 0)}})
    bad = Raw(srv.path)
    bad.sock.sendall(b"DM" + struct.pack("<I", len(payload)) + payload)
    assert bad.wait_closed() == 0
    bad.close()
    assert any("extension type -1 (timestamp) is not allowed" in line for line in srv.logs)


def test_many_pipelined_requests_in_one_read_are_all_answered(srv: ServerThread) -> None:
    """Frames beyond the free handler slots stay undecoded until a slot
    frees; none is lost (2,000 requests in one write, 64 slots)."""
    raw = Raw(srv.path)
    raw.sock.sendall(b"".join(encode_frame(req(i, "ListServices", {})) for i in range(2000)))
    assert sorted(raw.recv().re for _ in range(2000)) == list(range(2000))
    raw.close()


FLOOD = """
import socket, sys, time
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sys.argv[1])
    except OSError:
        pass
    s.close()
"""


@needs_root
def test_root_gets_through_a_connect_flood_on_its_own_socket(public: Path) -> None:
    st = ServerThread(str(public / "c.sock")).start()
    flooders = [subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                  sys.executable, "-c", FLOOD, st.path, "4"]) for _ in range(3)]
    try:
        assert stat.S_IMODE(os.stat(public / "c.root.sock").st_mode) == 0o600
        time.sleep(0.5)
        for _ in range(50):  # each within the client's 10 s (a hang guard)
            with Client(st.path, timeout=10) as root:
                assert root.path == str(public / "c.root.sock")
                assert root.request("ListServices").type == "ServiceList"
    finally:
        for p in flooders:
            p.wait(30)
        st.stop()
    assert not (public / "c.root.sock").exists()


@needs_root
def test_the_trusted_socket_refuses_other_users_even_if_opened_up(public: Path) -> None:
    st = ServerThread(str(public / "c.sock")).start()
    try:
        os.chmod(public / "c.root.sock", 0o666)  # a careless administrator
        with Attacker(str(public / "c.root.sock"), 3, settle=0.5) as atk:
            assert atk.alive == 0
        # Other users reach the public socket, as before.
        with Attacker(st.path, 3, settle=0.5) as atk:
            assert atk.alive == 3
    finally:
        st.stop()
    assert any("c.root.sock is for root and the server's own user only" in line for line in st.logs)


def test_a_client_falls_back_to_the_public_socket(tmp_path) -> None:
    """An older server has no trusted twin: root's client uses the public one."""
    st = ServerThread(str(tmp_path / "c.sock"), trusted_path=None).start()
    try:
        assert not (tmp_path / "c.root.sock").exists()
        with Client(st.path, timeout=5) as client:
            assert client.path == st.path
            assert client.request("ListServices").type == "ServiceList"
    finally:
        st.stop()


SMALL_SERVER = """
import asyncio, sys
from dynamod.ipc.schema import response
from dynamod.ipc.server import ControlServer

async def handler(conn, msg):
    return response(msg, "ServiceList", {"services": []})

async def main():
    server = ControlServer(sys.argv[1], handler, log=lambda m: print(m, flush=True))
    await server.start()
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_running_out_of_descriptors_is_logged_once_and_passes(tmp_path) -> None:
    path = str(tmp_path / "c.sock")
    out = tmp_path / "server.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(["prlimit", "--nofile=100:100", sys.executable, "-c", SMALL_SERVER, path],
                                stdout=log, stderr=subprocess.STDOUT)
    held: list[socket.socket] = []
    try:
        wait_until(lambda: "ready" in out.read_text(), "the server", context=out.read_text)
        # Our own (trusted) connections: far more than the server has fds for.
        for _ in range(300):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            held.append(s)
        wait_until(lambda: "out of file descriptors" in out.read_text(), "the shortage",
                   context=out.read_text)
        time.sleep(1)  # many more failed accepts meanwhile
        assert proc.poll() is None
        for s in held:
            s.close()
        held.clear()
        wait_until(lambda: "file descriptors available again" in out.read_text(), "the end of it",
                   context=out.read_text)
        with Client(path, timeout=10) as client:
            assert client.request("ListServices").type == "ServiceList"
    finally:
        for s in held:
            s.close()
        proc.kill()
        proc.wait()
    text = out.read_text()
    assert text.count("out of file descriptors") == 1, text
    m = re.search(r"available again \((\d+) accepts had failed\)", text)
    assert m and int(m.group(1)) >= 1, text


def test_a_twin_path_too_long_for_a_socket_is_done_without(tmp_path) -> None:
    """The public path fits sun_path, ``.root.sock`` would not: the server
    starts with the public socket only and says so."""
    room = 107 - len(str(tmp_path)) - len("/.sock") - 1
    path = str(tmp_path / ("x" * room + ".sock"))
    assert len(path) <= 107 < len(path) + len(".root")
    st = ServerThread(path).start()
    try:
        with Client(path, timeout=5) as client:
            assert client.path == path
            assert client.request("ListServices").type == "ServiceList"
    finally:
        st.stop()
    assert any("is too long for a Unix socket" in line for line in st.logs)
