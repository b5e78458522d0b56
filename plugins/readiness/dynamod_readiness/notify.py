"""Readiness type ``notify``: the sd_notify(3) protocol.

Who may speak for a service: the kernel-supplied sender PID must be a
process of that service, i.e. ``ctx.owns_pid`` (main and control processes,
every process of its cgroup with an isolation plugin) or a member of a
session led by one of its processes. The host starts every service in a new
session, so without cgroups the session is the best available "process tree
of the service": it admits ``systemd-notify`` run by an unprivileged service
script (which, not being root, can only send its own PID) and still refuses
every process the service did not start. Others are dropped, each sender
logged once.

A sender PID equal to the manager's own is accepted too: only a privileged
process can attach a PID not its own, and root ``systemd-notify`` attaches its
parent's, which is the manager when the service exec'd it (``daemon & exec
systemd-notify MAINPID=$! READY=1``). The per-service socket says which
service such a message is about (a shared socket could not attribute it).

Watchdog: ``watchdog = "10s"`` gives the service ``WATCHDOG_USEC``. The
timer is armed at ``READY=1`` (like systemd's WatchdogSec=, start-up is
bounded by ``timeout`` instead) and keeps running after readiness until the
service stops (``close``). ``WATCHDOG_PID`` is deliberately not set: the
service's PID is unknown until after the vfork-path spawn and a wrapper
that fills it in would name the wrong process as soon as another wrapper
forks (``unshare --fork``); sd_watchdog_enabled() treats an unset
``WATCHDOG_PID`` as "meant for me".
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from dynamod.api import ReadinessFailed, ServiceContext, SpawnSpec
from dynamod.config.units import format_duration
from dynamod_readiness import status
from dynamod_readiness.notify_socket import NotifyMessage, NotifySocket, choose_address
from dynamod_readiness.options import get_duration

# At most this many distinct foreign senders are logged per start: a
# misbehaving neighbour must not fill the service's log.
_MAX_LOGGED_SENDERS = 16
_PID_MAX = 4_194_304  # the kernel's upper limit for pid_max


def _uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _parse_int(value: str) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        return None


class NotifyDetector:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.watchdog = get_duration(ctx.config.readiness.options, "watchdog", 0.0)
        self.sock: NotifySocket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._failure: str | None = None
        self._was_ready = False
        self._stopping = False
        self._reloading = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_ping: float | None = None
        self._errno: int | None = None
        self._logged_senders: set[int] = set()
        self._told: set[str] = set()  # one-time notes already logged

    # -- Detector ------------------------------------------------------------
    def prepare(self, spec: SpawnSpec) -> None:
        self.loop = asyncio.get_running_loop()
        address = choose_address(self.ctx.runtime_dir, self.ctx.name)
        self.sock = NotifySocket(address, self._on_message, self.loop, self.ctx.log)
        spec.env["NOTIFY_SOCKET"] = address
        spec.env.pop("WATCHDOG_PID", None)
        if self.watchdog > 0:
            spec.env["WATCHDOG_USEC"] = str(round(self.watchdog * 1_000_000))
        status.register(self.ctx, self.status)

    async def wait(self) -> None:
        await self._ready.wait()
        if self._failure is not None:
            raise ReadinessFailed(self._failure)

    def close(self) -> None:
        self._disarm()
        if self.sock is not None:
            self.sock.close()
        status.unregister(self.ctx, self.status)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.sock is not None:
            out["notify-socket"] = self.sock.address
        if self.watchdog > 0:
            out["watchdog"] = format_duration(self.watchdog)
            if self._last_ping is not None:
                out["watchdog-last-ping"] = round(time.monotonic() - self._last_ping, 3)
        if self._errno is not None:
            out["status-errno"] = self._errno
        return out

    # -- attribution -----------------------------------------------------------
    def _is_ours(self, pid: int) -> bool:
        if self.ctx.owns_pid(pid):
            return True
        try:
            return os.getsid(pid) in self.ctx.pids
        except OSError:  # gone already, or not visible to us
            return False

    def _on_message(self, msg: NotifyMessage) -> None:
        if msg.problem:
            self.ctx.log(f"notify: dropped a message from pid {msg.pid}: {msg.problem}")
            return
        if msg.pid is None or not (msg.pid == os.getpid() or self._is_ours(msg.pid)):
            self._foreign(msg)
            return
        self._apply(msg)

    def _foreign(self, msg: NotifyMessage) -> None:
        # A bare barrier changes nothing, so nothing was dropped: not worth a
        # line (systemd-notify sends it with its own PID, unlike READY=1).
        if set(msg.fields) <= {"BARRIER"}:
            return
        key = msg.pid if msg.pid is not None else -1
        if key in self._logged_senders or len(self._logged_senders) >= _MAX_LOGGED_SENDERS:
            return
        self._logged_senders.add(key)
        who = (
            "a sender without credentials" if msg.pid is None else f"pid {msg.pid} (uid {msg.uid})"
        )
        self.ctx.log(
            f"notify: ignoring messages from {who}: not a process of this service "
            f"({', '.join(sorted(msg.fields)) or 'empty'})"
        )

    # -- the protocol ----------------------------------------------------------
    def _apply(self, msg: NotifyMessage) -> None:
        f = msg.fields
        # MAINPID first: "MAINPID=n\nREADY=1" must find the new main process
        # in place when readiness is declared (forking services need one).
        if "MAINPID" in f:
            self._main_pid(f["MAINPID"], msg)
        if "STATUS" in f:
            self.ctx.set_status_text(f["STATUS"])
        if "ERRNO" in f:
            n = _parse_int(f["ERRNO"])
            if n is not None and 0 <= n < 2**31:  # os.strerror takes a C int
                self._errno = n
                self.ctx.log(f"notify: service reports errno {n} ({os.strerror(n)})")
        if "EXTEND_TIMEOUT_USEC" in f:
            n = _parse_int(f["EXTEND_TIMEOUT_USEC"])
            if n is not None and n >= 0:
                self.ctx.extend_timeout(n / 1_000_000)
        if "WATCHDOG_USEC" in f:
            n = _parse_int(f["WATCHDOG_USEC"])
            if n is not None and n >= 0:
                self.watchdog = n / 1_000_000
                if n and self._was_ready and not self._stopping:
                    self._arm()
                else:
                    self._disarm()
        if f.get("RELOADING") == "1":
            self._reloading = True
            self.ctx.set_substate("reloading")
        if f.get("STOPPING") == "1":
            self._stopping = True
            self._disarm()  # the stop timeout governs from here on
            self.ctx.set_substate("stopping")
        if f.get("READY") == "1" and not self._stopping:
            self._on_ready()
        watchdog = f.get("WATCHDOG")
        if watchdog == "1":
            self._ping()
        elif watchdog == "trigger":
            self._fail("watchdog triggered by the service (WATCHDOG=trigger)")
        if msg.fds and "BARRIER" not in f and "fdstore" not in self._told:
            self._told.add("fdstore")
            self.ctx.log(f"notify: the fd store is not supported; closed {msg.fds} descriptor(s)")

    def _on_ready(self) -> None:
        if self._reloading:
            self._reloading = False
            self.ctx.set_substate("")
        if not self._was_ready:
            self._was_ready = True
            self._ready.set()
            if self.watchdog > 0:
                self._arm()

    def _main_pid(self, value: str, msg: NotifyMessage) -> None:
        pid = _parse_int(value)
        if pid is None or not 1 < pid <= _PID_MAX:
            self.ctx.log(f"notify: ignoring invalid MAINPID={value!r}")
            return
        if pid == self.ctx.main_pid:
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.ctx.log(f"notify: ignoring MAINPID={pid}: no such process")
            return
        except PermissionError:
            pass
        # The manager signals its main process on stop: an unprivileged
        # sender may only name a process of the service, or one it could
        # signal itself anyway (same uid).
        if msg.uid != 0 and not self._is_ours(pid) and _uid_of(pid) != msg.uid:
            self.ctx.log(f"notify: refusing MAINPID={pid} from uid {msg.uid}: not its process")
            return
        self.ctx.set_main_pid(pid)

    # -- watchdog --------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        if self.loop is not None and self.watchdog > 0:
            self._timer = self.loop.call_later(self.watchdog, self._missed)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _ping(self) -> None:
        self._last_ping = time.monotonic()
        if self._timer is not None:
            self._arm()

    def _missed(self) -> None:
        self._timer = None
        self._fail(f"watchdog timeout: no WATCHDOG=1 within {format_duration(self.watchdog)}")

    def _fail(self, reason: str) -> None:
        self._disarm()
        self.ctx.log(f"notify: {reason}")
        if not self._was_ready:
            # Still starting: end the readiness wait with the reason.
            self._failure = reason
            self._ready.set()
        else:
            self.ctx.fail(reason)
