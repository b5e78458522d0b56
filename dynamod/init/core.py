"""PID 1's event loop: signals, reaping, svmgr supervision, shutdown.

One ``selectors`` loop, no asyncio and no threads. Signal handlers only
record the signal (``set_wakeup_fd`` wakes the loop); all work happens in
guarded callbacks, so an exception anywhere is logged and the loop goes on.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import time
from collections import deque

from dynamod.init import final
from dynamod.init.log import error, flush_console, log, write_nonblocking
from dynamod.ipc import link
from dynamod.ipc.framing import FrameError, encode_frame
from dynamod.signals import SHUTDOWN_SIGNALS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ[name])
    except (KeyError, ValueError):
        return default


class Timing:
    """Supervision timings; overridable through the environment so tests
    can run the same code paths in seconds instead of minutes. (A plain
    class: dataclasses would cost PID 1 a few MiB of imports.)"""

    def __init__(self) -> None:
        self.heartbeat = _env_float("DYNAMOD_HEARTBEAT_INTERVAL", 5.0)
        self.missed_heartbeats = 3
        self.backoff_min = _env_float("DYNAMOD_BACKOFF_MIN", 0.5)
        self.backoff_max = _env_float("DYNAMOD_BACKOFF_MAX", 30.0)
        # An svmgr that ran this long is healthy again: backoff and crash count reset.
        self.stable_after = _env_float("DYNAMOD_STABLE_AFTER", 30.0)
        self.crash_loop = 5
        self.shutdown_deadline = _env_float("DYNAMOD_SHUTDOWN_TIMEOUT", 90.0)
        self.term_wait = 5.0
        self.kill_wait = 2.0


HANDLED = (*SHUTDOWN_SIGNALS, signal.SIGCHLD, signal.SIGUSR2, signal.SIGHUP)
# Dispositions a child must not inherit from us (Python ignores SIGPIPE).
RESET_IN_CHILD = (signal.SIGPIPE, signal.SIGXFSZ, *HANDLED)
KEEP_ORPHANS = 4096
ORPHANS_PER_FRAME = 2000


class Svmgr:
    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.outbox = link.Outbox()
        self.writing = False  # registered for EVENT_WRITE: the outbox waits
        self.started = time.monotonic()
        self.last_heartbeat = self.started
        self.killed = False


class Init:
    def __init__(
        self,
        *,
        container: bool,
        config_dir: str,
        runtime_dir: str,
        svmgr_argv: list[str] | None = None,
        emergency_on_start: bool = False,
        timing: Timing | None = None,
    ) -> None:
        self.container = container
        self.config_dir = config_dir
        self.runtime_dir = runtime_dir
        self.timing = timing or Timing()
        override = os.environ.get("DYNAMOD_SVMGR_COMMAND")
        if override and svmgr_argv is None:
            import shlex

            svmgr_argv = shlex.split(override)
        self.svmgr_argv = svmgr_argv or [
            sys.executable,
            "-m",
            "dynamod.svmgr.main",
            "--config-dir",
            config_dir,
            "--runtime-dir",
            runtime_dir,
        ]
        self.sel = selectors.DefaultSelector()
        self.pending_signals: deque[int] = deque()
        self.svmgr: Svmgr | None = None
        self.shell_pid: int | None = None
        self.shell_reason = ""
        self.orphans: deque[tuple[int, int]] = deque(maxlen=KEEP_ORPHANS)
        self.quick_exits = 0
        self.backoff = self.timing.backoff_min
        self.respawn_at: float | None = None
        self.shutdown_kind: str | None = None
        self.shutdown_deadline = 0.0
        self.exit_code: int | None = None
        self.faults = set(filter(None, os.environ.get("DYNAMOD_INIT_INJECT_FAULT", "").split(",")))
        self._setup_signals()
        if emergency_on_start:
            self.start_shell("dynamod.emergency=1 on the kernel command line")
        else:
            self.respawn_at = time.monotonic()

    # ----------------------------------------------------------------- plumbing
    def _setup_signals(self) -> None:
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        for sig in HANDLED:
            signal.signal(sig, self._record_signal)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._drain_wakeup)

    def _record_signal(self, signum: int, frame: object) -> None:
        self.pending_signals.append(signum)

    def _drain_wakeup(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def guard(self, name: str, fn: Callable[..., object], *args: object) -> None:
        """Run one handler; whatever it raises is logged and swallowed."""
        try:
            if name in self.faults:
                self.faults.discard(name)
                raise RuntimeError(f"injected fault in {name}")
            fn(*args)
        except BaseException as exc:  # PID 1 must survive even SystemExit here
            if isinstance(exc, SystemExit) and self.exit_code is not None:
                raise
            error(f"handler {name} failed: {type(exc).__name__}: {exc}")
            _log_traceback()

    # --------------------------------------------------------------------- loop
    def run(self) -> int:
        log(f"running ({'container' if self.container else 'system'} mode), pid {os.getpid()}")
        while self.exit_code is None:
            try:
                flush_console()
                timeout = self._next_timeout()
                events = self.sel.select(timeout)
                for key, _mask in events:
                    self.guard(getattr(key.data, "__name__", "io"), key.data)
                self.guard("signals", self._handle_signals)
                self.guard("timers", self._timers)
            except BaseException as exc:
                if isinstance(exc, SystemExit) and self.exit_code is not None:
                    break
                error(f"main loop error: {type(exc).__name__}: {exc}")
                time.sleep(0.1)  # never spin on a persistent error
        return self.exit_code

    def _next_timeout(self) -> float:
        now = time.monotonic()
        candidates = [self.timing.heartbeat]
        if self.respawn_at is not None:
            candidates.append(self.respawn_at - now)
        if self.svmgr is not None:
            candidates.append(self.svmgr.last_heartbeat + self._heartbeat_limit() - now)
        if self.shutdown_kind is not None:
            candidates.append(self.shutdown_deadline - now)
        if self.pending_signals:
            return 0
        return max(0.0, min(candidates))

    def _heartbeat_limit(self) -> float:
        return self.timing.heartbeat * self.timing.missed_heartbeats + 0.5

    def _timers(self) -> None:
        # A lost or failed SIGCHLD must not leave zombies behind for long.
        self.reap()
        now = time.monotonic()
        if self.respawn_at is not None and now >= self.respawn_at and self.shutdown_kind is None:
            self.respawn_at = None
            self.spawn_svmgr()
        mgr = self.svmgr
        if mgr is not None and not mgr.killed and now - mgr.last_heartbeat > self._heartbeat_limit():
            error(
                f"svmgr (pid {mgr.pid}) missed {self.timing.missed_heartbeats} heartbeats; killing it"
            )
            self._kill_svmgr()
        if self.shutdown_kind is not None and now >= self.shutdown_deadline:
            error("global shutdown deadline passed")
            if self.svmgr is not None and not self.svmgr.killed:
                self._kill_svmgr()
            self._final()

    # ------------------------------------------------------------------ signals
    def _handle_signals(self) -> None:
        while self.pending_signals:
            sig = self.pending_signals.popleft()
            if sig == signal.SIGCHLD:
                self.guard("sigchld", self.reap)
            elif sig in SHUTDOWN_SIGNALS:
                self.guard("shutdown", self.begin_shutdown, SHUTDOWN_SIGNALS[sig], sig)
            elif sig == signal.SIGUSR2:
                self.guard("emergency", self.start_shell, "SIGUSR2")
            else:
                log(f"ignoring signal {signame(sig)}")

    # ------------------------------------------------------------------ reaping
    def reap(self) -> None:
        exits: list[tuple[int, int]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == 0:
                break
            if self.svmgr is not None and pid == self.svmgr.pid:
                self.guard("svmgr-exit", self._svmgr_exited, status)
            elif pid == self.shell_pid:
                self.guard("shell-exit", self._shell_exited, status)
            else:
                exits.append((pid, status))
        if exits:
            self.orphans.extend(exits)
            self._send_orphans(exits)

    def _send_orphans(self, exits: list[tuple[int, int]]) -> None:
        # A running svmgr learns at once that one of its former services
        # (now our child) exited; a new one gets the backlog when it starts.
        for i in range(0, len(exits), ORPHANS_PER_FRAME):
            chunk = exits[i : i + ORPHANS_PER_FRAME]
            self.send("Orphans", {"exits": [[p, s] for p, s in chunk]})

    # -------------------------------------------------------------------- svmgr
    def spawn_svmgr(self) -> None:
        if self.svmgr is not None or self.shutdown_kind is not None:
            return
        parent, child = link.socketpair()
        try:
            os.set_inheritable(child.fileno(), True)
            env = dict(os.environ)
            env["DYNAMOD_INIT_FD"] = str(child.fileno())
            env["DYNAMOD_HEARTBEAT_INTERVAL"] = repr(self.timing.heartbeat)
            try:
                pid = os.posix_spawn(
                    self.svmgr_argv[0],
                    self.svmgr_argv,
                    env,
                    setsigdef=RESET_IN_CHILD,
                    setsigmask=(),
                )
            except OSError as exc:
                error(f"cannot start svmgr ({self.svmgr_argv[0]}): {exc.strerror or exc}")
                parent.close()
                self._schedule_respawn(0.0)
                return
        finally:
            child.close()
        parent.setblocking(False)
        self.svmgr = Svmgr(pid, parent)
        self.sel.register(parent, selectors.EVENT_READ, self._svmgr_io)
        log(f"svmgr started (pid {pid}){_since_exec()}")
        if self.orphans:
            self._send_orphans(list(self.orphans))

    def _svmgr_io(self) -> None:
        mgr = self.svmgr
        if mgr is None or mgr.sock.fileno() < 0:
            return
        if mgr.outbox:
            self._flush_outbox(mgr)
        alive = link.receive(
            mgr.sock,
            lambda payload: self.guard("svmgr-message", self._svmgr_message, payload),
            lambda problem: error(f"ignoring bad data from svmgr: {problem}"),
        )
        if not alive:
            self._close_link()

    def _svmgr_message(self, payload: dict) -> None:
        mgr = self.svmgr
        kind, body = payload.get("type"), payload.get("body")
        if not isinstance(kind, str) or not isinstance(body, dict):
            error(f"ignoring malformed message from svmgr: {str(payload)[:200]}")
            return
        if kind == "Heartbeat":
            if mgr is not None:
                mgr.last_heartbeat = time.monotonic()
            self.send("HeartbeatAck", {"seq": body.get("seq", 0)})
        elif kind == "RequestShutdown":
            what = body.get("kind")
            if what not in ("poweroff", "reboot", "halt"):
                error(f"ignoring RequestShutdown with bad kind {what!r}")
                return
            self.begin_shutdown(what, None, svmgr_done=True)
        elif kind == "LogToKmsg":
            log(f"svmgr: {body.get('message', '')}", level=int(body.get("level", 6)))
        elif kind == "Emergency":
            error(f"svmgr reports an emergency: {body.get('reason', '')}")
            self.start_shell(f"svmgr: {body.get('reason', '')}")
        else:
            error(f"ignoring unknown message {kind!r} from svmgr")

    def send(self, kind: str, body: dict) -> None:
        """Queue a message to svmgr: sent whole, now or once the link is
        writable; dropped (counted) when svmgr has not read 1 MiB of them —
        a stuck svmgr is the heartbeat check's business, not ours."""
        mgr = self.svmgr
        if mgr is None or mgr.sock.fileno() < 0:
            return
        try:
            frame = encode_frame({"id": 0, "kind": "event", "type": kind, "body": body})
        except FrameError as exc:
            error(f"cannot send {kind} to svmgr: {exc}")
            return
        dropped = mgr.outbox.dropped
        try:
            mgr.outbox.send(mgr.sock, frame)
        except OSError as exc:
            error(f"cannot send {kind} to svmgr: {exc.strerror or exc}")
            return
        if mgr.outbox.dropped and not dropped:
            error(f"svmgr does not read its link; dropping messages to it ({kind} first)")
        self._want_write(mgr, bool(mgr.outbox))

    def _flush_outbox(self, mgr: Svmgr) -> None:
        try:
            empty = mgr.outbox.flush(mgr.sock)
        except OSError as exc:
            error(f"cannot send to svmgr: {exc.strerror or exc}")
            empty = True
        if empty and mgr.outbox.dropped:
            log(f"svmgr reads its link again; {mgr.outbox.dropped} messages to it were dropped")
            mgr.outbox.dropped = 0
        self._want_write(mgr, not empty)

    def _want_write(self, mgr: Svmgr, on: bool) -> None:
        if on == mgr.writing:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        try:
            self.sel.modify(mgr.sock, events, self._svmgr_io)
            mgr.writing = on
        except (KeyError, ValueError, OSError) as exc:
            error(f"cannot watch the svmgr link: {exc}")

    def _close_link(self) -> None:
        mgr = self.svmgr
        if mgr is None or mgr.sock.fileno() < 0:
            return
        try:
            self.sel.unregister(mgr.sock)
        except (KeyError, ValueError):
            pass
        mgr.sock.close()

    def _kill_svmgr(self) -> None:
        mgr = self.svmgr
        if mgr is None:
            return
        mgr.killed = True
        try:
            os.kill(mgr.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _svmgr_exited(self, status: int) -> None:
        mgr = self.svmgr
        assert mgr is not None
        self._close_link()
        self.svmgr = None
        uptime = time.monotonic() - mgr.started
        log(f"svmgr (pid {mgr.pid}) {_describe(status)} after {uptime:.1f}s")
        if self.shutdown_kind is not None:
            self._final()
            return
        if uptime >= self.timing.stable_after:
            self.quick_exits = 0
            self.backoff = self.timing.backoff_min
        self.quick_exits += 1 if uptime < self.timing.stable_after else 0
        if self.quick_exits >= self.timing.crash_loop:
            self.quick_exits = 0
            self.backoff = self.timing.backoff_min
            self.start_shell(f"svmgr crash loop ({self.timing.crash_loop} exits, each within "
                             f"{self.timing.stable_after:g}s of its start)")
            return
        self._schedule_respawn(self.backoff)
        self.backoff = min(self.backoff * 2, self.timing.backoff_max)

    def _schedule_respawn(self, delay: float) -> None:
        log(f"restarting svmgr in {delay:.1f}s")
        self.respawn_at = time.monotonic() + delay

    # ---------------------------------------------------------------- emergency
    def start_shell(self, reason: str) -> None:
        if self.shell_pid is not None:
            return
        self.shell_reason = reason
        error(f"EMERGENCY: {reason}; starting an emergency shell")
        console = os.environ.get("DYNAMOD_CONSOLE", "/dev/console")
        argv = _shell_argv()
        try:
            fd = os.open(console, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            error(f"cannot open {console}: {exc.strerror}; no emergency shell")
            self._shell_exited(0)
            return
        try:
            actions = [(os.POSIX_SPAWN_DUP2, fd, 0), (os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)]
            env = dict(os.environ, DYNAMOD_EMERGENCY_REASON=reason)
            self.shell_pid = os.posix_spawn(
                argv[0], argv, env, file_actions=actions, setsid=True, setsigdef=RESET_IN_CHILD, setsigmask=()
            )
            write_nonblocking(console, f"\ndynamod-init: emergency shell ({reason}); exit it to retry\n")
        except OSError as exc:
            error(f"cannot start emergency shell {argv[0]}: {exc.strerror or exc}")
            self.shell_pid = None
        finally:
            os.close(fd)

    def _shell_exited(self, status: int) -> None:
        self.shell_pid = None
        log(f"emergency shell {_describe(status)}; trying svmgr again")
        if self.svmgr is None and self.shutdown_kind is None:
            self.respawn_at = time.monotonic()

    # ----------------------------------------------------------------- shutdown
    def begin_shutdown(self, kind: str, signum: int | None, svmgr_done: bool = False) -> None:
        """Ask svmgr for its ordered stop, then run the final sequence once
        it exits (or at the global deadline)."""
        if self.shutdown_kind is None:
            self.shutdown_kind = kind
            self.shutdown_deadline = time.monotonic() + self.timing.shutdown_deadline
            self.respawn_at = None
            log(f"shutdown requested: {kind}" + (f" (signal {signame(signum)})" if signum else ""))
        elif kind != self.shutdown_kind:
            log(f"shutdown already in progress ({self.shutdown_kind}); now {kind}")
            self.shutdown_kind = kind
        mgr = self.svmgr
        if mgr is None or mgr.sock.fileno() < 0:
            if mgr is None:
                self._final()
            return
        if svmgr_done:
            # svmgr has stopped its services; give it a moment to exit.
            self.shutdown_deadline = min(self.shutdown_deadline, time.monotonic() + 5.0)
        elif signum is not None:
            self.send("ShutdownSignal", {"signal": int(signum)})
        else:
            self.send("ShutdownSignal", {"signal": int(signal.SIGTERM)})

    def _final(self) -> None:
        kind = self.shutdown_kind or "poweroff"
        self.exit_code = final.run(kind, container=self.container, timing=self.timing, log_reaped=self.orphans.append)
        if self.exit_code is None:  # reboot(2) returned: nothing left to do
            while True:
                time.sleep(3600)


def _log_traceback() -> None:
    try:
        import traceback  # only on the error path: it is a costly import

        for line in traceback.format_exc().splitlines()[-6:]:
            error(f"  {line}")
    except Exception:
        pass


def signame(sig: int) -> str:
    if signal.SIGRTMIN <= sig <= signal.SIGRTMAX:
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _describe(status: int) -> str:
    if os.WIFEXITED(status):
        return f"exited {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        return f"killed by {signame(os.WTERMSIG(status))}"
    return f"status {status}"


def _shell_argv() -> list[str]:
    override = os.environ.get("DYNAMOD_EMERGENCY_SHELL")
    if override:
        import shlex

        return shlex.split(override)
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        if os.access(cand, os.X_OK):
            return [cand, "sh"]
    return ["/bin/sh"]


def _since_exec() -> str:
    """Time since this process was exec'd, from /proc (10 ms resolution)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        start_ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        ms = (uptime - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000
        return f", {ms:.0f} ms after exec"
    except (OSError, ValueError, IndexError):
        return ""

