"""The service manager's engine: activation, the start frontier, stop
ordering, restart policies and supervisor trees.

Everything runs on one asyncio loop and every transition is synchronous; the
only ``await`` points are readiness detectors and the replies to control
requests, so no two transitions ever interleave.

Vocabulary:

* *order edges* ``deps[s]``: the services ``s`` starts after when both are
  starting (requires, wants, after, and ``before`` reversed); ``rdeps`` is the
  reverse.
* *desired* (``closure``): services that are explicitly active plus whatever
  they require or want, transitively (Dinit's activation); a service leaving
  the closure is released (stopped). ``start`` makes a service explicit;
  ``stop`` clears that and *holds* it down (nothing pulls it in; what
  requires it is blocked) until it is started again; ``restart`` of an up
  service keeps its activation.
* *frontier*: a starting service is ``pending`` with ``waiting_on`` = its
  unmet dependencies: its ``requires``, and ordering dependencies that are
  starting anyway (one that stays down is no reason to wait).
  It is spawned when that set empties. Readiness of a
  service removes it from its dependents' sets. No recursion over the graph:
  every walk below uses an explicit stack or queue.
* *stop order*: a stopping service waits (``stop_wait``) until every
  dependent that is also stopping is down, so stops run in reverse
  dependency order and in parallel where the graph allows. A stop runs
  ``stop-exec`` (a control process whose output goes to the service's log;
  if it fails the stop signal follows at once, and it is killed itself after
  ``stop-timeout``) or sends ``stop-signal``; ``stop-timeout`` after the
  signal comes SIGKILL. StopService and shutdown share this path.
* *resume*: a service stopped because a ``requires`` dependency went down
  (or asked to start while it was stopping) starts again once it is down,
  if it is still desired; dependents waiting for it keep waiting.
* *restart jobs*: a failure that the policy restarts makes a
  :class:`RestartJob` of the failed service and its supervisor's strategy
  group (the group in dependency order); the others are stopped, and once
  all are down the job waits ``delay`` (a timer: the loop never blocks) and
  starts the desired ones in one frontier start. A member leaves its job
  when it fails for good, is stopped explicitly or released, is started
  explicitly (no need to wait out the delay), or joins another job; the job
  goes on without it. Intensity exceeded: the supervisor's subtree is
  stopped and its parent applies its own strategy to it (a job over the
  parent's group), or the parent fails in turn; the root's failure calls
  ``on_root_failure``.
* *failure vs. ready*: a spawn failure, a start or readiness timeout and any
  exit before the service was ready (even with status 0) are failures; a
  forking service's pid file must name a live process (or one we reaped).
* *reload*: changed services that are up are stopped with their old
  configuration and are *frozen* meanwhile (nothing starts them with it);
  then configurations are swapped, the graph rebuilt, changed and added
  services that are desired are started and what nothing needs any more is
  released.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from dynamod.api import ReadinessFailed
from dynamod.config.extensions import Extensions, builtin_extensions
from dynamod.config.graph import order_edges, topological_order
from dynamod.config.model import ROOT_SUPERVISOR, SupervisorConfig, SystemConfig
from dynamod.config.units import format_duration
from dynamod.plugins import PluginHost
from dynamod.svmgr import states as st
from dynamod.svmgr.logbuf import PipeReader
from dynamod.svmgr.reaper import Reaper, describe_status
from dynamod.svmgr.service import Service, Supervisor, Waiter
from dynamod.svmgr.spawn import SpawnError, build_spec, spawn

Listener = Callable[[dict[str, Any]], None]


class OperationFailed(Exception):
    """A control operation did not succeed; the message says why."""


class RestartJob:
    """Services (and supervisors) restarted together: once all members are
    down, wait ``delay`` and start the desired ones again."""

    def __init__(self, members: set[str], supervisors: set[str], delay: float) -> None:
        self.members = members
        self.supervisors = supervisors
        self.waiting: set[str] = set()
        self.delay = delay
        self.armed = False


class Manager:
    def __init__(
        self,
        config: SystemConfig,
        *,
        runtime_dir: str,
        extensions: Extensions | None = None,
        plugins: PluginHost | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.runtime_dir = runtime_dir
        self.ext = extensions or builtin_extensions()
        self.plugins = plugins
        self._log = log or (lambda m: print(f"dynamod-svmgr: {m}", file=sys.stderr, flush=True))
        self.loop = asyncio.get_event_loop()
        self.reaper = Reaper(on_error=self.log)
        self.services: dict[str, Service] = {}
        self.supervisors: dict[str, Supervisor] = {}
        self.listeners: list[Listener] = []
        self.closure: set[str] = set()
        self.shutting_down = False
        self.root_failed: str | None = None
        self.on_root_failure: Callable[[str], None] | None = None
        self.reload_lock = asyncio.Lock()
        # Changed services a reload is stopping: started again only with
        # their new configuration (see reload()).
        self.frozen: set[str] = set()
        self._apply_supervisors(config.supervisors)
        for cfg in config.services.values():
            self.services[cfg.name] = Service(self, cfg)
        self._rebuild_graph()

    # ------------------------------------------------------------------ util
    def log(self, message: str) -> None:
        try:
            self._log(message)
        except Exception:
            pass

    def _plugin_error(self, plugin: str, exc: Exception) -> None:
        self.log(f"plugin {plugin!r} failed: {type(exc).__name__}: {exc}")

    def _call_hook(self, name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        if self.plugins is None:
            return []
        return self.plugins.call_each(name, on_error=self._plugin_error, **kwargs)

    def _apply_supervisors(self, cfgs: dict[str, SupervisorConfig]) -> None:
        cfgs = dict(cfgs)
        cfgs.setdefault(ROOT_SUPERVISOR, SupervisorConfig(name=ROOT_SUPERVISOR))
        for name in list(self.supervisors):
            if name not in cfgs:
                del self.supervisors[name]
        for name, cfg in cfgs.items():
            if name in self.supervisors:
                self.supervisors[name].cfg = cfg
            else:
                self.supervisors[name] = Supervisor(cfg)

    def _rebuild_graph(self) -> None:
        cfgs = {n: s.cfg for n, s in self.services.items()}
        self.deps: dict[str, set[str]] = {n: set(v) for n, v in order_edges(cfgs).items()}
        for n in cfgs:
            self.deps.setdefault(n, set())
        self.rdeps: dict[str, set[str]] = {n: set() for n in cfgs}
        for n, ds in self.deps.items():
            for d in ds:
                self.rdeps[d].add(n)
        self.requires = {n: {d for d in c.dependencies.requires if d in cfgs} for n, c in cfgs.items()}
        self.req_by: dict[str, set[str]] = {n: set() for n in cfgs}
        for n, ds in self.requires.items():
            for d in ds:
                self.req_by[d].add(n)
        self.pulls = {
            n: self.requires[n] | {d for d in c.dependencies.wants if d in cfgs}
            for n, c in cfgs.items()
        }
        self.topo_index = {n: i for i, n in enumerate(topological_order(cfgs))}

    def _compute_closure(self) -> set[str]:
        closure: set[str] = set()
        stack = [n for n, s in self.services.items() if s.explicit and not s.held]
        while stack:
            n = stack.pop()
            if n in closure or self.services[n].held:
                continue
            closure.add(n)
            stack.extend(self.pulls[n])
        return closure

    def _set_state(self, s: Service, new: str, reason: str = "") -> None:
        old = s.state
        if old == new and reason == s.reason:
            return
        s.state, s.reason, s.since = new, reason, time.time()
        self.log(f"{s.name}: {old} -> {new}" + (f" ({reason})" if reason else ""))
        for fut, check in list(s.waiters):
            if fut.done():
                s.waiters.remove((fut, check))
                continue
            try:
                result = check(s, old, new)
            except Exception as exc:
                s.waiters.remove((fut, check))
                fut.set_exception(exc)
                continue
            if result is not None:
                s.waiters.remove((fut, check))
                fut.set_result(result)
        event = {"name": s.name, "old": old, "new": new, "reason": reason, "time": s.since}
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception as exc:
                self.log(f"state listener failed: {exc}")
        self._call_hook("dynamod_service_state_changed", service=s, old=old, new=new, reason=reason)

    def wait_for(self, s: Service, check: Waiter) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        s.waiters.append((fut, check))
        return fut

    # ------------------------------------------------------------ life cycle
    def start_all(self) -> None:
        """Boot: every enabled service is explicitly active."""
        for s in self.services.values():
            if s.cfg.enabled:
                s.explicit = True
        self.closure = self._compute_closure()
        self._start_many(sorted(self.closure), retry_failed=True)

    async def shutdown(self) -> None:
        """Stop everything in reverse dependency order; return when all down."""
        self.shutting_down = True
        for s in self.services.values():
            s.explicit = False
            s.resume = False
            if s.restart_job is not None:
                s.restart_job = None
                if s.state == st.RESTARTING:
                    s.cancel_timers()
                    self._settle_stopped(s)
        self.closure = set()
        await self._stop_and_wait(list(self.services.values()))

    async def _stop_and_wait(self, targets: Iterable[Service]) -> None:
        targets = list(targets)
        futs = [self.wait_for(s, lambda s, o, n: True if n in st.DOWN else None) for s in targets]
        self._stop_set(targets)
        pending = [f for s, f in zip(targets, futs, strict=True) if s.state not in st.DOWN]
        for s, f in zip(targets, futs, strict=True):
            if s.state in st.DOWN and not f.done():
                f.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ---------------------------------------------------------------- start
    def _start_many(self, names: Iterable[str], retry_failed: bool) -> None:
        """Start services and whatever they require or want (phase 1 walks the
        graph with a stack, phase 2 sets the frontier, phase 3 spawns the
        services with no unmet dependency)."""
        if self.shutting_down:
            return
        roots = list(names)
        batch: list[Service] = []
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            s = self.services[n]
            if n in self.frozen:
                continue
            if s.held and n not in roots:
                continue
            if s.state == st.STOPPING:
                s.resume = True
                continue
            if s.state in st.UP or s.state in (st.PENDING, st.STARTING, st.WAITING_READY):
                continue
            if s.state == st.RESTARTING and s.restart_job is not None:
                continue
            if s.state == st.FAILED and not retry_failed:
                continue
            batch.append(s)
            stack.extend(self.pulls[n])
        for s in batch:
            s.waiting_on = set()
            self._set_state(s, st.PENDING)
        spawnable: list[Service] = []
        for s in batch:
            if s.state != st.PENDING:  # blocked meanwhile by a dependency
                continue
            waiting, blocker = self._unmet(s)
            if blocker:
                self._block(s, blocker)
                continue
            s.waiting_on = waiting
            if not waiting:
                spawnable.append(s)
        for s in spawnable:
            if s.state == st.PENDING and not s.waiting_on:
                self._spawn(s)

    def _unmet(self, s: Service) -> tuple[set[str], str | None]:
        waiting: set[str] = set()
        for d in self.deps[s.name]:
            ds = self.services[d]
            if ds.state in st.UP:
                continue
            if d in self.requires[s.name]:
                if ds.held:
                    return waiting, f"requires {d}, which was stopped"
                if ds.state == st.FAILED:
                    return waiting, f"requires {d}, which failed"
                if ds.state == st.BLOCKED:
                    return waiting, f"requires {d}, which is blocked"
                waiting.add(d)
            elif ds.state in st.COMING_UP or self._coming_back(ds):
                # Ordering only: wait for it if it is starting anyway; one
                # that stays down is no reason to wait.
                waiting.add(d)
        return waiting, None

    def _block(self, s: Service, reason: str) -> None:
        """Block ``s`` and every pending service that requires it."""
        stack = [(s, reason)]
        while stack:
            svc, why = stack.pop()
            if svc.state != st.PENDING:
                continue
            svc.waiting_on = set()
            self._set_state(svc, st.BLOCKED, why)
            for e in self.req_by[svc.name]:
                es = self.services[e]
                if es.state == st.PENDING:
                    stack.append((es, f"requires {svc.name}, which is blocked"))
            self._release_ordering_waiters(svc)

    def _settle_stopped(self, s: Service) -> None:
        """A service without a process (restarting) will not come back:
        it is stopped, and whoever waited for it goes on or is blocked."""
        self._set_state(s, st.STOPPED, s.reason)
        self._release_ordering_waiters(s)

    def _release_ordering_waiters(self, d: Service) -> None:
        """``d`` settled without coming up: services that only ordered
        themselves after it go on; those that require it are blocked."""
        for e in sorted(self.rdeps[d.name]):
            es = self.services[e]
            if es.state != st.PENDING or d.name not in es.waiting_on:
                continue
            if d.name in self.requires[e]:
                if self._coming_back(d):
                    continue
                what = {st.FAILED: "failed", st.BLOCKED: "is blocked"}.get(d.state, "was stopped")
                self._block(es, f"requires {d.name}, which {what}")
            else:
                es.waiting_on.discard(d.name)
                if not es.waiting_on and not self.shutting_down:
                    self._spawn(es)

    def _coming_back(self, d: Service) -> bool:
        """``d`` is down (or on its way down) but will be started again
        without anyone asking: a restart job, a reload, or a resume (after
        its own dependency came back, or a start that came while it was
        stopping)."""
        if d.state == st.RESTARTING or d.name in self.frozen:
            return True
        return d.state in (st.STOPPED, st.STOPPING) and d.resume and d.name in self.closure and not d.held

    def _on_up(self, d: Service) -> None:
        for e in sorted(self.rdeps[d.name], key=self.topo_index.__getitem__):
            es = self.services[e]
            if es.state == st.PENDING and d.name in es.waiting_on:
                es.waiting_on.discard(d.name)
                if not es.waiting_on and not self.shutting_down:
                    self._spawn(es)
        retry = [e for e in self.req_by[d.name] if self.services[e].state == st.BLOCKED and e in self.closure]
        if retry:
            self._start_many(retry, retry_failed=False)

    def _spawn(self, s: Service) -> None:
        s.generation += 1
        gen = s.generation
        s.exit = None
        s.pending_failure = None
        s.stop_sent = False
        s.signal_sent = False
        s._main_pid = None
        s.status_text = ""
        s.substate = ""
        s.resume = False
        detector = None
        try:
            rtype = self.ext.readiness.get(s.cfg.readiness.type)
            if rtype is None:
                raise SpawnError(self.ext.missing_hint("readiness", s.cfg.readiness.type))
            if s.cfg.type != "oneshot":
                detector = rtype[0].create(s)
            spec = build_spec(s.cfg)
            if detector is not None:
                detector.prepare(spec)
            if self.plugins is not None:
                self.plugins.hook.dynamod_spawn_prepare(service=s, spec=spec)
            spawned = spawn(spec)
        except Exception as exc:
            if detector is not None:
                with contextlib.suppress(Exception):
                    detector.close()
            reason = str(exc) if isinstance(exc, SpawnError) else f"{type(exc).__name__}: {exc}"
            self.log(f"{s.name}: cannot start: {reason}")
            s.exit = None
            self._set_state(s, st.STARTING)
            self._handle_failure(s, f"spawn failed: {reason}", clean=False)
            return
        s.pid = spawned.pid
        s.detector = detector
        for problem in spawned.problems:
            self.log(f"{s.name}: {problem}")
        self._prune_readers(s)
        self.reaper.watch(spawned.pid, lambda pid, status: self._on_exit(s, gen, pid, status))
        s.readers.append(PipeReader(self.loop, spawned.output_fd, s.log_buffer))
        self._set_state(s, st.STARTING)
        self._call_hook("dynamod_service_started", service=s, pid=spawned.pid)
        if s.state != st.STARTING or s.generation != gen:
            return
        if s.cfg.type in ("oneshot", "forking"):
            timeout = s.cfg.readiness.timeout
            s.deadline = self.loop.time() + timeout
            s.timers.append(
                self.loop.call_later(
                    timeout,
                    self._start_timeout,
                    s,
                    gen,
                    f"start timeout after {format_duration(timeout)}",
                )
            )
        else:
            self._await_ready(s, gen)

    def _start_timeout(self, s: Service, gen: int, reason: str) -> None:
        if s.generation == gen and s.state in (st.STARTING, st.WAITING_READY):
            self._kill_for_failure(s, reason)

    def _await_ready(self, s: Service, gen: int) -> None:
        self._set_state(s, st.WAITING_READY)
        if s.detector is None:
            self._became_ready(s)
            return
        s.ready_task = self.loop.create_task(self._readiness(s, gen, s.detector))

    async def _readiness(self, s: Service, gen: int, detector: Any) -> None:
        timeout = s.cfg.readiness.timeout
        s.deadline = self.loop.time() + timeout
        reason: str | None = None
        waiting = self.loop.create_task(detector.wait())
        try:
            # The deadline may move (extend_timeout), so wait in slices.
            while not waiting.done():
                remaining = s.deadline - self.loop.time()
                if remaining <= 0:
                    waiting.cancel()
                    reason = f"readiness timeout after {format_duration(timeout)}"
                    break
                await asyncio.wait({waiting}, timeout=remaining)
            if reason is None:
                waiting.result()
        except asyncio.CancelledError:
            waiting.cancel()
            raise
        except ReadinessFailed as exc:
            reason = str(exc) or "readiness check failed"
        except Exception as exc:
            reason = f"readiness detector error: {type(exc).__name__}: {exc}"
        if s.generation != gen or s.state != st.WAITING_READY:
            return
        s.ready_task = None
        if reason is None:
            self._became_ready(s)
        else:
            self._kill_for_failure(s, reason)

    def extend_timeout(self, s: Service, seconds: float) -> None:
        """EXTEND_TIMEOUT_USEC: readiness waits re-read ``s.deadline``; stop
        and start timers are re-armed to the new deadline."""
        new = self.loop.time() + seconds
        if new <= s.deadline:
            return
        s.deadline = new
        if s.state == st.WAITING_READY and s.ready_task is not None:
            return
        if s.state in (st.STARTING, st.STOPPING) and s.timers:
            gen = s.generation
            s.cancel_timers()
            if s.state == st.STARTING:
                s.timers.append(self.loop.call_at(new, self._start_timeout, s, gen, "start timeout (extended)"))
            elif s.signal_sent:
                s.timers.append(self.loop.call_at(new, self._stop_timeout, s, gen))
            elif s.stop_sent:  # stop-exec is running
                s.timers.append(self.loop.call_at(new, self._signal_stop, s, gen))

    def _became_ready(self, s: Service) -> None:
        if s.cfg.type == "forking" and s._main_pid is None:
            self._kill_for_failure(s, "forking service became ready without a main PID")
            return
        self._set_state(s, st.RUNNING)
        self._on_up(s)

    # ------------------------------------------------------------------ exit
    def _on_exit(self, s: Service, gen: int, pid: int, status: int | None) -> None:
        """A process of ``s`` exited; ``status`` is None when it was not our
        child and its exit status cannot be known."""
        if gen != s.generation:
            return
        desc = describe_status(status) if status is not None else "exited (status unknown)"
        if (
            pid == s.pid
            and s.cfg.type == "forking"
            and s.state == st.STARTING
            and s._main_pid != pid
            and s.pending_failure is None
        ):
            # The start process of a forking service: its exit is not the end.
            if status != 0:
                s.exit = desc
                self._handle_failure(s, f"start process {desc}", clean=False)
            elif s._main_pid is None:
                self._forking_parent_exited(s, gen)
            else:
                # MAINPID= (sd_notify) named the daemon before its parent exited.
                self._await_ready(s, gen)
            return
        if pid != s.main_pid:
            return
        s.exit = desc
        if self.plugins is not None and s.state != st.STOPPING:
            try:
                better = self.plugins.hook.dynamod_service_exit_reason(service=s, pid=pid, status=status)
            except Exception as exc:
                self.log(f"{s.name}: exit reason hook failed: {exc}")
                better = None
            if isinstance(better, str) and better:
                desc = f"{better} ({desc})"
        if s.pending_failure is not None:
            self._handle_failure(s, s.pending_failure, clean=False)
        elif s.state == st.STOPPING:
            self._went_down(s, st.STOPPED, s.reason)
        elif s.cfg.type == "oneshot" and s.state == st.STARTING:
            if status == 0:
                s.cancel_timers()
                self._set_state(s, st.EXITED)
                self._on_up(s)
            else:
                self._handle_failure(s, desc, clean=False)
        elif s.state in (st.STARTING, st.WAITING_READY):
            # Gone before it was ready: a failed start, whatever the status.
            self._handle_failure(s, desc if status else f"{desc} before it was ready", clean=False)
        else:
            self._handle_failure(s, desc, clean=status == 0)

    def _forking_parent_exited(self, s: Service, gen: int) -> None:
        path = s.cfg.pid_file
        if path:
            try:
                with open(path, encoding="ascii") as f:
                    pid = int(f.read().strip())
                if pid <= 0:
                    raise ValueError
            except (OSError, ValueError):
                self._handle_failure(s, f"pid file {path} missing or invalid after start", clean=False)
                return
            if pid not in self.reaper.unknown and not _exists(pid):
                self._handle_failure(s, f"pid file {path} names PID {pid}, which is not running", clean=False)
                return
            self.adopt_main_pid(s, pid)
            if s.generation != gen or s.state != st.STARTING:
                return
        elif s.cfg.readiness.type == "none":
            self._handle_failure(
                s,
                "forking service needs pid-file (or MAINPID= through the notify readiness type)",
                clean=False,
            )
            return
        self._await_ready(s, gen)

    def adopt_main_pid(self, s: Service, pid: int) -> None:
        """Make ``pid`` the service's main process and watch its exit."""
        if pid == s._main_pid or s.state not in st.ALIVE:
            return
        s._main_pid = pid
        gen = s.generation
        if _parent_of(pid) == os.getpid() or pid in self.reaper.unknown:
            self.reaper.watch(pid, lambda p, status: self._on_exit(s, gen, p, status))
            return
        # Not our child (we are not its subreaper): watch with a pidfd; the
        # exit status cannot be known.
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            # Neither running nor reaped by us: the pid names nothing (a
            # stale pid file, a daemon that died and was reaped by its parent).
            self.loop.call_soon(self._main_pid_missing, s, gen, pid)
            return
        except OSError:
            self.loop.call_soon(self._on_exit, s, gen, pid, None)
            return

        def gone() -> None:
            self.loop.remove_reader(fd)
            os.close(fd)
            self._on_exit(s, gen, pid, None)

        self.loop.add_reader(fd, gone)

    def _main_pid_missing(self, s: Service, gen: int, pid: int) -> None:
        if gen != s.generation or pid != s.main_pid or s.state not in st.ALIVE:
            return
        if s.state == st.STOPPING and s.pending_failure is None:
            self._went_down(s, st.STOPPED, s.reason)
            return
        self._handle_failure(s, s.pending_failure or f"main PID {pid} is not running", clean=False)

    def _kill_for_failure(self, s: Service, reason: str) -> None:
        s.pending_failure = reason
        self._kill(s, signal.SIGKILL)
        if self._no_main_process(s):
            self._handle_failure(s, reason, clean=False)

    def _no_main_process(self, s: Service) -> bool:
        """A forking service whose start process exited before anything
        (MAINPID=) named its daemon: no exit is left to wait for, so a stop
        or a failed start must conclude at once."""
        return (
            s.cfg.type == "forking"
            and s._main_pid is None
            and s.pid is not None
            and not self.reaper.watching(s.pid)
        )

    def fail_service(self, s: Service, reason: str) -> None:
        """A plugin declared a running service failed: stop it gracefully and
        report the failure when it is gone."""
        if s.state not in (st.WAITING_READY, st.RUNNING):
            return
        s.pending_failure = reason
        self._do_stop(s)

    def _teardown(self, s: Service, kill_leftovers: bool) -> None:
        s.cancel_timers()
        if s.ready_task is not None:
            s.ready_task.cancel()
            s.ready_task = None
        if s.detector is not None:
            try:
                s.detector.close()
            except Exception as exc:
                self.log(f"{s.name}: readiness detector close failed: {exc}")
            s.detector = None
        if kill_leftovers and s.pid is not None:
            # The main process is gone; what it left in its process group
            # goes with it (KillMode=control-group without cgroups).
            self._kill(s, signal.SIGKILL)
        s.stop_sent = False
        s.signal_sent = False

    def _handle_failure(self, s: Service, reason: str, clean: bool) -> None:
        self._teardown(s, kill_leftovers=True)
        s.pending_failure = None
        # A failure is decided afresh, even if a group restart had already
        # taken it in (it failed on its way down).
        self._leave_job(s)
        policy = s.cfg.restart.policy
        down = st.STOPPED if clean else st.FAILED
        restart = policy == "permanent" or (policy == "transient" and not clean)
        if self.shutting_down or s.held or s.name not in self.closure or not restart:
            self._went_down(s, down, reason)
            return
        r = s.cfg.restart
        if not s.restarts.charge(r.max_restarts, r.max_restart_window):
            self._went_down(
                s,
                st.FAILED,
                f"{reason}; gave up after {r.max_restarts} restarts in "
                f"{format_duration(r.max_restart_window)}",
            )
            return
        s.restart_count += 1
        sup = self.supervisors[s.cfg.supervisor]
        if not sup.charge():
            self._went_down(s, st.FAILED, reason)
            self._supervisor_failed(
                sup,
                f"{s.name} {reason}: more than {sup.cfg.max_restarts} restarts in "
                f"{format_duration(sup.cfg.max_restart_window)}",
            )
            return
        members, sups = self._strategy_group(sup, ("service", s.name))
        # ``s`` itself is already gone: it joins the job without a stop.
        job = self._make_job(members - {s.name}, sups, r.delay)
        job.members.add(s.name)
        s.restart_job = job
        self._went_down(s, st.RESTARTING, reason)
        self._run_job(job)

    def _went_down(self, s: Service, state: str, reason: str = "") -> None:
        """The single path by which a service ends up without a process."""
        self._teardown(s, kill_leftovers=False)
        s.pid = None
        s._main_pid = None
        s.control_pids.clear()
        s.waiting_on = set()
        s.stop_wait = set()
        if s.down_state is not None:
            state, reason = s.down_state
            s.down_state = None
            self._leave_job(s)
        elif s.restart_job is not None:
            if state != st.FAILED and s.name in self.closure:
                state = st.RESTARTING
            else:
                # Failed for good, or no longer wanted (stopped explicitly
                # while its group was restarting): the others go on alone.
                self._leave_job(s)
        job = s.restart_job
        self._set_state(s, state, reason)
        self._call_hook("dynamod_service_stopped", service=s)
        # Dependents first: hard ones stop (and come back with us).
        up_dependents = [
            self.services[e]
            for e in self.req_by[s.name]
            if self.services[e].state in st.ALIVE or self.services[e].state == st.EXITED
        ]
        if up_dependents:
            self._stop_set(up_dependents, resume=True)
        self._release_ordering_waiters(s)
        # Our dependencies may have been waiting for us to stop first.
        for d in self.deps[s.name]:
            ds = self.services[d]
            if ds.state == st.STOPPING and not ds.stop_sent and s.name in ds.stop_wait:
                ds.stop_wait.discard(s.name)
                if not ds.stop_wait:
                    self._do_stop(ds)
        if job is not None and s.state == st.RESTARTING:
            job.waiting.discard(s.name)
            self._run_job(job)
        if s.resume and s.state == st.STOPPED:
            s.resume = False
            if s.name in self.closure:
                self._start_many([s.name], retry_failed=False)
        if s.removed and s.state in st.DOWN:
            self._forget(s)

    # ------------------------------------------------------------------- stop
    def _stop_set(self, targets: Iterable[Service], resume: bool = False) -> None:
        """Stop services and, first, everything alive that requires them."""
        batch: list[Service] = []
        seen: set[str] = set()
        stack = [(s, resume) for s in targets]
        while stack:
            s, res = stack.pop()
            if s.name in seen:
                continue
            seen.add(s.name)
            if res:
                s.resume = True
            batch.append(s)
            for e in self.req_by[s.name]:
                es = self.services[e]
                if es.state in st.ALIVE or es.state in (st.EXITED, st.PENDING):
                    stack.append((es, True))
        to_stop: list[Service] = []
        for s in batch:
            if s.state == st.PENDING:
                self._went_down(s, st.STOPPED)
            elif s.state == st.RESTARTING:
                self._leave_job(s)
                s.cancel_timers()
                self._settle_stopped(s)
            elif s.state == st.BLOCKED and s.name not in self.closure:
                self._set_state(s, st.STOPPED)
            elif s.state in (st.STARTING, st.WAITING_READY, st.RUNNING, st.EXITED):
                s.stop_sent = False
                s.signal_sent = False
                self._set_state(s, st.STOPPING)
                to_stop.append(s)
        for s in to_stop:
            if s.state != st.STOPPING or s.stop_sent:
                continue
            s.stop_wait = {e for e in self.rdeps[s.name] if self.services[e].state == st.STOPPING}
            if not s.stop_wait:
                self._do_stop(s)

    def _do_stop(self, s: Service) -> None:
        s.stop_sent = True
        if s.state != st.STOPPING:
            self._set_state(s, st.STOPPING)
        if s.ready_task is not None:
            s.ready_task.cancel()
            s.ready_task = None
        if s.pid is None or (s.cfg.type == "oneshot" and s.exit is not None):
            self._went_down(s, st.STOPPED, s.reason)
            return
        if self._no_main_process(s):
            self._kill(s, s.cfg.shutdown.stop_signal)  # whatever it left in its group
            if s.pending_failure is not None:
                self._handle_failure(s, s.pending_failure, clean=False)
            else:
                self._went_down(s, st.STOPPED, s.reason)
            return
        sh = s.cfg.shutdown
        gen = s.generation
        if sh.stop_exec:
            self._run_stop_exec(s, gen)
        else:
            self._signal_stop(s, gen)

    def _run_stop_exec(self, s: Service, gen: int) -> None:
        """Run ``stop-exec`` as a control process of ``s``. Its output goes
        to the service's log. If it fails (cannot start, exits non-zero, is
        killed) while the service is still up, the stop signal follows at
        once; otherwise the signal is sent only if the service is still
        alive ``stop-timeout`` later. The control process itself gets no
        longer than ``stop-timeout``: then its process group is killed."""
        timeout = s.cfg.shutdown.stop_timeout
        try:
            spec = build_spec(s.cfg, s.cfg.shutdown.stop_exec)
            if s.main_pid is not None:
                spec.env["MAINPID"] = str(s.main_pid)
            spawned = spawn(spec)
        except SpawnError as exc:
            s.log(f"stop-exec failed: {exc}; sending {_signame(s.cfg.shutdown.stop_signal)}")
            self._signal_stop(s, gen)
            return
        pid = spawned.pid
        s.control_pids.add(pid)
        self._prune_readers(s)
        s.readers.append(PipeReader(self.loop, spawned.output_fd, s.log_buffer))
        s.deadline = self.loop.time() + timeout
        s.timers.append(self.loop.call_at(s.deadline, self._signal_stop, s, gen))

        def overdue() -> None:
            s.log(f"stop-exec still running after {format_duration(timeout)}; killing it")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

        # Not one of the service's timers: it must outlive the service's
        # own stop (the main process may exit before stop-exec does).
        kill_timer = self.loop.call_later(timeout, overdue)

        def done(_pid: int, status: int) -> None:
            kill_timer.cancel()
            s.control_pids.discard(pid)
            if status == 0:
                return
            s.log(f"stop-exec {describe_status(status)}")
            if s.generation == gen and s.state == st.STOPPING and not s.signal_sent:
                s.cancel_timers()
                s.log(f"sending {_signame(s.cfg.shutdown.stop_signal)}")
                self._signal_stop(s, gen)

        self.reaper.watch(pid, done)

    @staticmethod
    def _prune_readers(s: Service) -> None:
        """Forget output readers that reached EOF (one per spawn would
        otherwise pile up over restarts)."""
        s.readers = [r for r in s.readers if r.fd >= 0]

    def _signal_stop(self, s: Service, gen: int) -> None:
        if s.generation != gen or s.state != st.STOPPING or s.pid is None:
            return
        s.signal_sent = True
        self._kill(s, s.cfg.shutdown.stop_signal)
        s.deadline = self.loop.time() + s.cfg.shutdown.stop_timeout
        s.timers.append(self.loop.call_at(s.deadline, self._stop_timeout, s, gen))

    def _stop_timeout(self, s: Service, gen: int) -> None:
        if s.generation != gen or s.state != st.STOPPING or s.pid is None:
            return
        s.log(f"still running {format_duration(s.cfg.shutdown.stop_timeout)} after stop; killing")
        s.reason = f"killed after stop timeout ({format_duration(s.cfg.shutdown.stop_timeout)})"
        self._kill(s, signal.SIGKILL)

    def _kill(self, s: Service, sig: int) -> None:
        if self.plugins is not None:
            try:
                handled = self.plugins.hook.dynamod_service_kill(service=s, signal=sig)
            except Exception as exc:
                self.log(f"{s.name}: kill hook failed: {exc}")
                handled = False
            # A process spawned a moment ago may still be in its wrapper, not
            # yet in the plugin's cgroup: SIGKILL also goes to the process
            # group, so a kill can never miss it.
            if handled and sig != signal.SIGKILL:
                return
        if s.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(s.pid, sig)
        main = s._main_pid
        if main is not None and main != s.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(main, sig)

    # ------------------------------------------------------------ supervisors
    def _children(self, sup: str) -> list[tuple[str, str]]:
        """Direct children of a supervisor in start (dependency) order."""
        kids: list[tuple[float, str, str]] = []
        for n, s in self.services.items():
            if s.cfg.supervisor == sup:
                kids.append((self.topo_index[n], "service", n))
        for n, sv in self.supervisors.items():
            if sv.cfg.parent == sup and n != sup:
                members = self._subtree(n)[0]
                pos = min((self.topo_index[m] for m in members), default=float("inf"))
                kids.append((pos, "supervisor", n))
        kids.sort(key=lambda k: (k[0], k[2]))
        return [(k, n) for _, k, n in kids]

    def _subtree(self, sup: str) -> tuple[set[str], set[str]]:
        services: set[str] = set()
        sups: set[str] = set()
        stack = [sup]
        while stack:
            n = stack.pop()
            if n in sups:
                continue
            sups.add(n)
            services.update(m for m, s in self.services.items() if s.cfg.supervisor == n)
            stack.extend(m for m, sv in self.supervisors.items() if sv.cfg.parent == n and m != n)
        return services, sups

    def _strategy_group(self, sup: Supervisor, child: tuple[str, str]) -> tuple[set[str], set[str]]:
        kids = self._children(sup.name)
        strategy = sup.cfg.strategy
        if strategy == "one-for-all":
            chosen = kids
        elif strategy == "rest-for-one":
            idx = kids.index(child) if child in kids else 0
            chosen = kids[idx:]
        else:
            chosen = [child]
        services: set[str] = set()
        sups: set[str] = set()
        for kind, n in chosen:
            if kind == "service":
                services.add(n)
            else:
                sv, ss = self._subtree(n)
                services |= sv
                sups |= ss
        return services, sups

    def _make_job(self, members: set[str], sups: set[str], delay: float) -> RestartJob:
        # Only what is wanted (or running) takes part in a group restart.
        members = {
            m
            for m in members
            if m in self.closure or self.services[m].state in st.ALIVE
        }
        job = RestartJob(members, sups, delay)
        alive: list[Service] = []
        for m in sorted(members):
            s = self.services[m]
            self._leave_job(s)
            s.restart_job = job
            s.resume = False
            # The restart supersedes a final state forced on the way down
            # (a failed child supervisor's services are restarted by its
            # parent).
            s.down_state = None
            if s.state in st.ALIVE or s.state == st.EXITED:
                job.waiting.add(m)
                alive.append(s)
            elif s.state != st.RESTARTING:
                s.waiting_on = set()
                self._set_state(s, st.RESTARTING, s.reason)
        for n in sups:
            self.supervisors[n].state = "restarting"
        if alive:
            self._stop_set(alive)
        return job

    def _leave_job(self, s: Service) -> None:
        """Take ``s`` out of its restart job; the job goes on without it."""
        job = s.restart_job
        if job is None:
            return
        s.restart_job = None
        job.members.discard(s.name)
        job.waiting.discard(s.name)
        if job.members:
            self._run_job(job)

    def _run_job(self, job: RestartJob) -> None:
        if job.waiting or job.armed:
            return
        job.armed = True
        self.loop.call_later(job.delay, self._fire_job, job)

    def _fire_job(self, job: RestartJob) -> None:
        for n in job.supervisors:
            if n in self.supervisors:
                sv = self.supervisors[n]
                sv.state, sv.reason = "running", ""
                sv.window.reset()
        names = []
        for m in sorted(job.members):
            s = self.services.get(m)
            if s is None or s.restart_job is not job:
                continue
            s.restart_job = None
            if m in self.closure and not self.shutting_down:
                names.append(m)
            elif s.state == st.RESTARTING:
                self._settle_stopped(s)
        self._start_many(names, retry_failed=True)

    def _supervisor_failed(self, sup: Supervisor, reason: str) -> None:
        """Intensity exceeded: stop the whole subtree, then let the parent
        apply its own strategy to it (escalating further if the parent's
        intensity is exceeded too)."""
        while True:
            sup.state, sup.reason = "failed", reason
            sup.failures += 1
            sup.last_failure = time.time()
            self.log(f"SUPERVISOR {sup.name} FAILED: {reason}")
            parent = self.supervisors.get(sup.cfg.parent or "") if sup.cfg.parent else None
            if parent is None:
                self._root_supervisor_failed(sup, reason)
                return
            if not parent.charge():
                reason = (
                    f"child supervisor {sup.name} failed: more than {parent.cfg.max_restarts} "
                    f"restarts in {format_duration(parent.cfg.max_restart_window)}"
                )
                services, _ = self._subtree(sup.name)
                self._fail_services(services, f"supervisor {sup.name} failed")
                sup = parent
                continue
            members, sups = self._strategy_group(parent, ("supervisor", sup.name))
            delay = max(
                (self.services[m].cfg.restart.delay for m in self._subtree(sup.name)[0]),
                default=1.0,
            )
            job = self._make_job(members, sups | {sup.name}, delay)
            self._run_job(job)
            return

    def _fail_services(self, names: Iterable[str], reason: str) -> None:
        alive = []
        for n in names:
            s = self.services[n]
            self._leave_job(s)
            if s.state in st.ALIVE or s.state == st.EXITED:
                s.down_state = (st.FAILED, reason)
                alive.append(s)
            elif s.state in (st.PENDING, st.RESTARTING, st.STOPPED, st.BLOCKED) and n in self.closure:
                s.cancel_timers()
                s.waiting_on = set()
                self._set_state(s, st.FAILED, reason)
                self._release_ordering_waiters(s)
        if alive:
            self._stop_set(alive)

    def _root_supervisor_failed(self, sup: Supervisor, reason: str) -> None:
        self.root_failed = reason
        services, _ = self._subtree(sup.name)
        self._fail_services(services, f"supervisor {sup.name} failed")
        if self.on_root_failure is not None:
            try:
                self.on_root_failure(reason)
            except Exception as exc:
                self.log(f"root failure action failed: {exc}")

    # ------------------------------------------------------- control requests
    def get(self, name: str) -> Service:
        s = self.services.get(name)
        if s is None:
            raise KeyError(name)
        return s

    async def start(self, name: str) -> Service:
        s = self.get(name)
        if self.shutting_down:
            raise OperationFailed("the system is shutting down")
        s.explicit = True
        # Starting a service says its requirements are wanted too, even ones
        # stopped explicitly before (as ``systemctl start`` would).
        stack, seen = [name], set()
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                self.services[n].held = False
                stack.extend(self.requires[n])
        if s.state in st.UP:
            self.closure = self._compute_closure()
            return s
        if s.state == st.FAILED:
            s.restarts.reset()
        if s.state == st.RESTARTING:
            # Asked for explicitly: no need to wait out the restart delay.
            self._leave_job(s)
        fut = self.wait_for(s, _start_result)
        self.closure = self._compute_closure()
        self._start_many([name], retry_failed=True)
        if s.state in st.UP and not fut.done():
            fut.cancel()
            return s
        await fut
        return s

    async def stop(self, name: str) -> Service:
        s = self.get(name)
        s.explicit = False
        s.held = True
        s.resume = False
        self.closure = self._compute_closure()
        released = [x for x in self._released() if x is not s]
        if s.state in st.DOWN:
            self._stop_set(released)
            if s.state == st.BLOCKED:
                self._set_state(s, st.STOPPED)
            return s
        fut = self.wait_for(s, lambda s, o, n: True if n in st.DOWN else None)
        self._stop_set([s, *released])
        if s.state in st.DOWN and not fut.done():
            fut.cancel()
            return s
        await fut
        return s

    async def restart(self, name: str) -> Service:
        s = self.get(name)
        if self.shutting_down:
            raise OperationFailed("the system is shutting down")
        if s.state not in st.ALIVE and s.state != st.EXITED:
            return await self.start(name)
        # A restart leaves activation alone (a service that is up only
        # because something needs it stays released with it), unless it
        # was on its way down: then it is a start.
        if s.held or name not in self.closure:
            s.explicit = True
        s.held = False
        self.closure = self._compute_closure()
        seen_down = False

        def check(svc: Service, old: str, new: str) -> Any:
            nonlocal seen_down
            if new == st.RESTARTING:
                seen_down = True
            if seen_down:
                return _start_result(svc, old, new)
            return None

        fut = self.wait_for(s, check)
        job = self._make_job({name}, set(), 0.0)
        self._run_job(job)
        await fut
        return s

    def status_of(self, s: Service) -> dict[str, Any]:
        info = s.info()
        for _plugin, extra in self._call_hook("dynamod_service_status", service=s):
            if isinstance(extra, dict):
                info["extra"].update(extra)
        return info

    def tree(self) -> dict[str, Any]:
        def node(sup: str) -> dict[str, Any]:
            d = self.supervisors[sup].info()
            children = []
            for kind, n in self._children(sup):
                if kind == "service":
                    s = self.services[n]
                    children.append({"name": n, "kind": "service", "state": s.state, "reason": s.reason, "restarts": s.restart_count})
                else:
                    children.append(node(n))
            d["children"] = children
            return d

        return node(ROOT_SUPERVISOR)

    def service_by_pid(self, pid: int) -> str | None:
        for s in self.services.values():
            if pid in s.pids and s.state in st.ALIVE:
                return s.name
        for _plugin, name in self._call_hook("dynamod_service_by_pid", pid=pid):
            if isinstance(name, str) and name in self.services:
                return name
        return None

    async def reload(self, config: SystemConfig) -> dict[str, list[str]]:
        """Apply a validated configuration: stop removed services, restart
        changed ones, start added ones; leave unchanged ones alone.

        Changed services that are up are stopped with their old
        configuration (its stop settings) and started with the new one.
        While they are down they are *frozen*: nothing (a requires-dependent
        coming back, a restart job) starts them with the old configuration;
        dependents wait for them. Afterwards every changed or added service
        that would be active at boot (or was started explicitly) is started,
        and whatever is no longer needed by anything active is released."""
        async with self.reload_lock:
            new = config.services
            removed = [n for n in self.services if n not in new]
            changed = [n for n in self.services if n in new and new[n] != self.services[n].cfg]
            added = [n for n in new if n not in self.services]
            for n in removed:
                self.services[n].explicit = False
                self.services[n].held = True
                self.services[n].removed = True
            restart = [
                n
                for n in changed
                if self.services[n].state in st.ALIVE
                or self.services[n].state in (st.EXITED, st.PENDING, st.RESTARTING)
            ]
            self.frozen = set(restart)
            self.closure = self._compute_closure()
            try:
                await self._stop_and_wait([self.services[n] for n in removed + restart])
            finally:
                self.frozen = set()
            for n in removed:
                s = self.services.get(n)
                if s is not None:
                    self._forget(s)
            for n in changed:
                s = self.services[n]
                if s.cfg.enabled != new[n].enabled:
                    s.explicit = new[n].enabled
                s.cfg = new[n]
                s.restarts.reset()
                if s.state == st.FAILED:
                    self._set_state(s, st.STOPPED)
            for n in added:
                self.services[n] = Service(self, new[n])
                self.services[n].explicit = new[n].enabled
            self._apply_supervisors(config.supervisors)
            self._rebuild_graph()
            self.closure = self._compute_closure()
            self._stop_set(self._released())
            start = {n for n in (*changed, *added) if n in self.closure}
            self._start_many(sorted(start), retry_failed=True)
            return {"added": added, "removed": removed, "changed": changed}

    def _released(self) -> list[Service]:
        """Services up (or on their way) that nothing active needs any more."""
        return [
            s
            for n, s in self.services.items()
            if n not in self.closure
            and (s.state in st.ALIVE or s.state in (st.EXITED, st.PENDING, st.RESTARTING))
        ]

    def adopt(self, s: Service, pid: int | None, main_pid: int | None) -> None:
        """Take over a service the previous svmgr ran (see adopt.py): a
        finished oneshot (``pid`` None) or a running process."""
        s.generation += 1
        if pid is None:
            self._set_state(s, st.EXITED)
            return
        s.pid = pid
        s._main_pid = main_pid if main_pid != pid else None
        self._set_state(s, st.RUNNING)

    def adopted_exit(self, s: Service, gen: int, pid: int, status: int) -> None:
        self._on_exit(s, gen, pid, status)

    def orphans_exited(self, exits: list[tuple[int, int]]) -> None:
        """Exit statuses init reaped for us (processes reparented to it)."""
        for pid, status in exits:
            self.reaper.unknown[pid] = status

    def _forget(self, s: Service) -> None:
        if self.services.get(s.name) is s:
            for r in s.readers:
                r.close()
            del self.services[s.name]
            self._rebuild_graph()


def _start_result(s: Service, old: str, new: str) -> Any:
    if new in st.UP:
        return True
    if new == st.FAILED or new == st.BLOCKED:
        raise OperationFailed(f"{s.name} {new}: {s.reason}" if s.reason else f"{s.name} {new}")
    if new == st.RESTARTING and old in (st.STARTING, st.WAITING_READY):
        raise OperationFailed(f"{s.name} failed to start: {s.reason} (will be restarted)")
    if new == st.STOPPED and old != st.RESTARTING and not s.resume:
        # (With ``resume`` it was stopping when the start came and goes on
        # to start as soon as it is down.)
        raise OperationFailed(f"{s.name} stopped: {s.reason}" if s.reason else f"{s.name} stopped")
    return None


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None
