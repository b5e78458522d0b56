"""Knowing when the services of a trial are running, without disturbing the
machine while it starts them.

"Running" means: the service's process has executed its program (argv[0] is
the run's ``svc-sleep`` symlink). As root, the kernel's process-event
connector reports every exec(2) with its own monotonic timestamp, so the
watcher costs nothing while the manager works and its times are exact.
Without root (or where the connector is unavailable) it falls back to
scanning /proc every few milliseconds, which costs CPU and adds the scan
interval to every figure; the report says which method was used.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
import time

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_EXEC = 0x00000002
NLMSG_DONE = 3
SO_RCVBUFFORCE = 33
_NLHDR = struct.Struct("=IHHII")
_CNMSG = struct.Struct("=IIIIHH")
_EVHDR = struct.Struct("=IIQ")


class ExecWatcher:
    """Collects the pids (and times, ``time.monotonic_ns`` clock) at which
    processes whose argv[0] starts with ``prefix`` were exec'd."""

    def __init__(self, prefix: str, force_scan: bool = False) -> None:
        self.prefix = prefix.encode()
        self.seen: dict[int, int] = {}
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self.method = "proc-scan"
        self.lost = 0  # connector overruns, caught up by a scan
        if not force_scan:
            with contextlib.suppress(OSError):
                self._sock = self._subscribe()
                self.method = "proc-connector"
        self._thread = threading.Thread(
            target=self._events if self._sock else self._scan, name="exec-watcher", daemon=True
        )

    # -- life cycle -------------------------------------------------------------
    def __enter__(self) -> ExecWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Not joined: the thread notices within 0.1 s and closes its socket
        # itself; nobody should wait for that.
        self._stop.set()

    # -- queries -------------------------------------------------------------------
    def count(self) -> int:
        with self.cond:
            return len(self.seen)

    def wait(self, n: int, timeout: float) -> int | None:
        """The monotonic ns at which the n-th process was exec'd, or None if
        fewer than n were within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.seen) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))
            return sorted(self.seen.values())[n - 1]

    def pids(self) -> set[int]:
        with self.cond:
            return set(self.seen)

    # -- the connector ---------------------------------------------------------------
    @staticmethod
    def _send_op(sock: socket.socket, op: int) -> None:
        payload = struct.pack("=I", op)
        cn = _CNMSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
        sock.send(_NLHDR.pack(_NLHDR.size + len(cn), NLMSG_DONE, 0, 0, os.getpid()) + cn)

    def _subscribe(self) -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
            sock.bind((0, CN_IDX_PROC))
            self._send_op(sock, PROC_CN_MCAST_LISTEN)
            sock.settimeout(0.1)
        except OSError:
            sock.close()
            raise
        return sock

    def _match(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read(len(self.prefix)) == self.prefix
        except OSError:
            return False

    def _record(self, found: dict[int, int]) -> None:
        if found:
            with self.cond:
                for pid, ts in found.items():
                    self.seen.setdefault(pid, ts)
                self.cond.notify_all()

    def _events(self) -> None:
        assert self._sock is not None
        try:
            self._receive(self._sock)
        finally:
            with contextlib.suppress(OSError):
                self._send_op(self._sock, PROC_CN_MCAST_IGNORE)
            self._sock.close()

    def _receive(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped events
                    self.lost += 1
                    self._scan_once()
                    continue
                raise
            found: dict[int, int] = {}
            off = 0
            while off + _NLHDR.size <= len(data):
                length = _NLHDR.unpack_from(data, off)[0]
                ev = off + _NLHDR.size + _CNMSG.size
                what, _cpu, ts = _EVHDR.unpack_from(data, ev)
                if what == PROC_EVENT_EXEC:
                    _pid, tgid = struct.unpack_from("=II", data, ev + _EVHDR.size)
                    if self._match(tgid):
                        found[tgid] = ts
                off += (length + 3) & ~3
                if length == 0:
                    break
            self._record(found)

    # -- the fallback ------------------------------------------------------------------
    def _scan_once(self) -> None:
        now = time.monotonic_ns()
        known = self.pids()
        found = {}
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in known and self._match(int(name)):
                found[int(name)] = now
        self._record(found)

    def _scan(self) -> None:
        while not self._stop.wait(0.005):
            self._scan_once()


def running(prefix: str) -> list[int]:
    """Live processes whose argv[0] starts with ``prefix`` (a /proc scan)."""
    p = prefix.encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if f.read(len(p)) != p:
                    continue
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if data[data.rindex(b")") + 2 :][:1] not in (b"Z", b"X"):
            out.append(int(name))
    return out
