"""The service manager's engine: one queue-driven state machine.

Everything that happens (a control request, a process exit, readiness, a
timer) is an event on one queue; :meth:`Engine.drain` takes them in order. A
transition changes the records of the services it concerns and may *queue*
further work, but never runs another transition itself: the depth of the
call stack does not depend on the size or shape of the graph (a chain of
5,000 ``requires`` stops and starts like a chain of 5). What the engine
decides comes out as effects (:mod:`dynamod.svmgr.effects`) for the executor;
their outcomes come back as events (the ``on_*`` methods). The engine uses no
``os``, no asyncio and no plugin: tests run it in-process on a fake clock.

Vocabulary (as in Dinit):

* *desired* (``closure``): services explicitly active plus whatever they
  require or want, transitively; a service leaving it is released. ``start``
  makes a service explicit; ``stop`` clears that and *holds* it down
  (nothing pulls it in; what requires it is blocked) until it is started
  again; ``restart`` of an up service keeps its activation.
* *frontier*: a starting service is ``pending`` with ``waiting_on`` = its
  unmet dependencies (its ``requires``, and ordering dependencies that are
  starting anyway). It is spawned when that set empties.
* *stop order*: a stopping service waits (``stop_wait``) until every
  dependent that is also stopping is down: reverse dependency order, in
  parallel where the graph allows. ``stop-exec`` or ``stop-signal``, then
  SIGKILL after ``stop-timeout``.
* *resume*: a service stopped because a ``requires`` dependency went down
  (or asked to start while stopping) starts again once it is down, if still
  desired.
* *jobs* (:mod:`dynamod.svmgr.jobs`): each control request; its end is
  decided by what happens to its unit.
* *failure*: see :mod:`dynamod.svmgr.supervision`.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

from dynamod.config.model import ROOT_SUPERVISOR, ServiceConfig, SupervisorConfig, SystemConfig
from dynamod.config.units import format_duration
from dynamod.svmgr import effects as fx
from dynamod.svmgr import jobs
from dynamod.svmgr import states as st
from dynamod.svmgr.index import Index
from dynamod.svmgr.jobs import Job
from dynamod.svmgr.kinds import kind_of
from dynamod.svmgr.records import Service, Supervisor
from dynamod.svmgr.supervision import Supervision
from dynamod.svmgr.waitstatus import describe_status, signal_name


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds: timers, windows, deadlines."""

    def wall(self) -> float:
        """Seconds since the epoch: what ``since`` shows."""


class OperationFailed(Exception):
    """A control request was refused; the message says why."""


# (service, old state, new state, reason, wall time)
Change = tuple[str, str, str, str, float]

# A start job of a service with no readiness to wait for (readiness
# ``none``) ends ``done`` only if the service is still up this long after it
# started: a program that exits at once fails its job instead of reporting
# "started".
START_CONFIRM = 0.05


class Engine(Supervision):
    def __init__(
        self,
        config: SystemConfig,
        *,
        clock: Clock,
        log: Callable[[str], None] = lambda m: None,
        service_log: Callable[[str, str], None] = lambda n, m: None,
    ) -> None:
        self.clock = clock
        self.log = log
        self.service_log = service_log
        self.services: dict[str, Service] = {}
        self.supervisors: dict[str, Supervisor] = {}
        self.closure: set[str] = set()
        self.shutting_down = False
        self.root_failed: str | None = None
        # Changed services a reload is stopping: started again only with
        # their new configuration.
        self.frozen: set[str] = set()
        # Services a reload is removing (reload_begin to reload_finish).
        self._reload_removed: list[str] = []
        self.jobs: dict[int, Job] = {}
        self._next_job = 1
        self._next_token = 1
        self._queue: deque[tuple[Callable[..., None], tuple[Any, ...], Job | None]] = deque()
        self._draining = False
        self._ending: list[Job] = []
        self._cause: Job | None = None
        # Output of a drain, taken by the manager (take()).
        self.effects: list[fx.Effect] = []
        self.changes: list[Change] = []
        self.job_events: list[tuple[str, Job]] = []
        self.alerts: list[tuple[str, str]] = []
        self._apply_supervisors(config.supervisors)
        for cfg in config.services.values():
            self.services[cfg.name] = Service(cfg, clock.wall())
        self._add_refused(config)
        self._rebuild()

    # ------------------------------------------------------------- the queue
    def post(self, fn: Callable[..., None], *args: Any) -> None:
        self._queue.append((fn, args, self._cause))

    def drain(self) -> None:
        """Run queued work until none is left. Re-entrant calls return at
        once: the outer drain picks up what they queued."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                fn, args, cause = self._queue.popleft()
                self._cause = cause
                try:
                    fn(*args)
                except Exception as exc:  # one bad transition must not stop the rest
                    self.log(f"internal error in {getattr(fn, '__name__', fn)}: {type(exc).__name__}: {exc}")
                    import traceback

                    self.log(traceback.format_exc().rstrip())
                finally:
                    self._cause = None
                if not self._queue and self._ending:
                    self._finish_jobs()
        finally:
            self._draining = False

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    def take(self) -> tuple[list[fx.Effect], list[Change], list[tuple[str, Job]], list[tuple[str, str]]]:
        out = (self.effects, self.changes, self.job_events, self.alerts)
        self.effects, self.changes, self.job_events, self.alerts = [], [], [], []
        return out

    # ----------------------------------------------------------- structure
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

    def _add_refused(self, config: SystemConfig) -> None:
        """A service whose file was refused is a ``failed`` unit showing why;
        what requires it is blocked with that reason."""
        for name, ref in getattr(config, "refused", {}).items():
            if name in self.services and self.services[name].load_error is None:
                continue
            cfg = refused_config(name, ref, self.supervisors)
            s = self.services.get(name)
            if s is None:
                s = self.services[name] = Service(cfg, self.clock.wall())
            s.cfg = cfg
            s.load_error = "; ".join(ref.errors) or "configuration refused"
            s.state = st.FAILED
            s.reason = f"configuration refused: {s.load_error}"

    def _rebuild(self) -> None:
        loaded = {n: s.cfg for n, s in self.services.items() if s.load_error is None}
        known = [n for n, s in self.services.items() if s.load_error is not None]
        sups = {n: sv.cfg for n, sv in self.supervisors.items()}
        self.index = Index(loaded, sups, known)

    def _compute_closure(self) -> set[str]:
        closure: set[str] = set()
        stack = [n for n, s in self.services.items() if s.explicit and not s.held]
        pulls = self.index.pulls
        while stack:
            n = stack.pop()
            if n in closure or self.services[n].held:
                continue
            closure.add(n)
            stack.extend(pulls[n])
        return closure

    def _live(self, s: Service) -> bool:
        return self.services.get(s.name) is s

    # --------------------------------------------------------------- state
    def _set_state(self, s: Service, new: str, reason: str = "") -> None:
        old = s.state
        if old == new and reason == s.reason:
            return
        s.state, s.reason, s.since = new, reason, self.clock.wall()
        now = self.clock.now()
        if new == st.PENDING:
            s.pending_at, s.started_at, s.ready_at = now, None, None
            phase = 0
        elif new == st.STARTING:
            s.started_at = now
            phase = 1
        elif new in st.UP:
            s.ready_at = now
            phase = 2
        else:
            phase = -1
        if phase >= 0 and s.boot[phase] is None:
            s.boot[phase] = now
        self.changes.append((s.name, old, new, reason, s.since))
        self._attribute(s, new, reason)
        if s.job is not None:
            self._check_job(s, old, new)

    def _arm(self, s: Service, seconds: float, kind: str, reason: str = "") -> None:
        token = self._next_token
        self._next_token += 1
        s.timer, s.timer_kind, s.timer_reason = token, kind, reason
        s.deadline = self.clock.now() + seconds
        self.effects.append(fx.ArmTimer(s.name, token, s.deadline))

    def _disarm(self, s: Service) -> None:
        s.timer = 0

    # ---------------------------------------------------------------- jobs
    def request(self, name: str, jtype: str, mode: str = "replace") -> Job:
        """Make a job of a control request and queue it; the caller drains.
        Raises KeyError for an unknown service and OperationFailed when the
        request cannot even be queued."""
        s = self.services[name]
        if jtype not in jobs.TYPES:
            raise OperationFailed(f"unknown job type {jtype!r} (known: {', '.join(jobs.TYPES)})")
        if mode not in jobs.MODES:
            raise OperationFailed(f"unknown job mode {mode!r} (known: {', '.join(jobs.MODES)})")
        if self.shutting_down and jtype != "stop":
            raise OperationFailed("the system is shutting down")
        if s.cfg.masked and jtype != "stop":
            raise OperationFailed(masked_message(name))
        old = s.job
        if old is not None and not old.ended:
            if old.type == jtype:
                # The same request again: one job. A start or stop is applied
                # again all the same, since what happened in between may
                # have undone it (a start of a dependent un-holds what it
                # requires; the second stop must hold it down again).
                if jtype in ("start", "stop"):
                    self._queue.append((self._t_request, (old,), old))
                return old
            if mode == "fail":
                raise OperationFailed(
                    f"{name} has a {old.type} job pending (job {old.id}); "
                    "job mode 'replace' would cancel it"
                )
            self._end_job(old, jobs.CANCELED, f"replaced by a {jtype} job")
        job = Job(self._next_job, name, jtype, mode)
        self._next_job += 1
        s.job = job
        self.jobs[job.id] = job
        self.job_events.append(("new", job))
        self._queue.append((self._t_request, (job,), job))
        return job

    def cancel_job(self, job_id: int) -> bool:
        """End a job as canceled; what it already set in motion goes on
        (as with systemd's CancelJob)."""
        job = self.jobs.get(job_id)
        if job is None:
            return False
        self._end_job(job, jobs.CANCELED, "canceled by request")
        return True

    def _end_job(self, job: Job, result: str, reason: str = "") -> None:
        if job.ended or job.ending:
            return
        job.ending = True
        job.result, job.reason = result, reason
        self._ending.append(job)
        if not self._draining:
            self._finish_jobs()

    def _finish_jobs(self) -> None:
        ending, self._ending = self._ending, []
        for job in ending:
            job.ended = True
            self.jobs.pop(job.id, None)
            s = self.services.get(job.unit)
            if s is not None and s.job is job:
                s.job = None
            self.job_events.append(("removed", job))

    def on_job_confirm(self, job_id: int) -> None:
        self.post(self._e_job_confirm, job_id)

    def _e_job_confirm(self, job_id: int) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.ending or not job.confirming:
            return
        s = self.services.get(job.unit)
        if s is not None and s.state in st.UP:
            self._end_job(job, jobs.DONE)

    def _check_job(self, s: Service, old: str, new: str) -> None:
        """Whether this transition ends the job on ``s``."""
        job = s.job
        assert job is not None
        if job.ending:
            return
        if job.confirming:
            if new not in st.UP:
                self._end_job(job, jobs.FAILED, s.reason or f"{new} right after it started")
            return
        if job.kind == "stop":
            if new in st.DOWN:
                self._end_job(job, jobs.DONE)
            return
        if job.kind == "restart":
            if new == st.RESTARTING:
                job.seen_down = True
            elif new == st.STOPPED and s.name not in self.closure and s.restart_job is None:
                # Up only for a dependent that was stopped meanwhile: a
                # restart leaves activation alone, so it stays down.
                self._end_job(job, jobs.CANCELED, s.reason or "nothing needs it any more")
                return
            elif new not in (st.FAILED, st.BLOCKED):
                return
        if new in st.UP:
            if new == st.RUNNING and s.cfg.readiness.type == "none" and old != st.RUNNING:
                job.confirming = True
                self.effects.append(fx.ArmJobConfirm(job.id, START_CONFIRM))
            else:
                self._end_job(job, jobs.DONE)
        elif new == st.FAILED:
            self._end_job(job, jobs.TIMEOUT if s.fail_kind == "timeout" else jobs.FAILED, s.reason)
        elif new == st.BLOCKED:
            self._end_job(job, jobs.DEPENDENCY, s.reason)
        elif new == st.RESTARTING and old in (st.STARTING, st.WAITING_READY):
            result = jobs.TIMEOUT if s.fail_kind == "timeout" else jobs.FAILED
            self._end_job(job, result, f"{s.reason} (will be restarted)")
        elif new == st.STOPPED and old != st.RESTARTING and not s.resume:
            # (With ``resume`` it was stopping when the start came and goes
            # on to start as soon as it is down.)
            self._end_job(job, jobs.CANCELED, s.reason or "stopped meanwhile")

    def _attribute(self, s: Service, new: str, reason: str) -> None:
        """Record what a job did to services other than its own."""
        job = self._cause
        if job is None or job.ended or job.unit == s.name:
            job = s.cause
        if job is not None and not job.ended and job.unit != s.name:
            job.effects.append((s.name, new, reason))
            s.cause = job
        if new in st.UP or (new in st.DOWN and not s.resume):
            s.cause = None

    def _t_request(self, job: Job) -> None:
        if job.ended:
            return
        s = self.services.get(job.unit)
        if s is None:
            self._end_job(job, jobs.CANCELED, "the service was removed")
            return
        if self.shutting_down and job.type != "stop":
            self._end_job(job, jobs.CANCELED, "the system is shutting down")
            return
        if job.type == "stop":
            self._t_stop(s, job)
        elif job.type == "start":
            self._t_start(s, job)
        elif not s.alive_or_exited:
            if job.type == "try-restart":
                self._end_job(job, jobs.SKIPPED, "not running")
                return
            job.seen_down = True  # restart of a service that is down: a start
            self._t_start(s, job)
        else:
            self._t_restart(s, job)

    def _t_start(self, s: Service, job: Job) -> None:
        if s.load_error is not None:
            self._end_job(job, jobs.FAILED, s.reason)
            return
        s.explicit = True
        # Starting a service says its requirements are wanted too, even ones
        # stopped explicitly before (as ``systemctl start`` would).
        stack, seen = [s.name], set()
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                self.services[n].held = False
                stack.extend(self.index.requires[n])
        self.closure = self._compute_closure()
        if s.state in st.UP:
            self._end_job(job, jobs.DONE)
            return
        if s.state == st.FAILED:
            s.restarts.reset()
        if s.state == st.RESTARTING:
            # Asked for explicitly: no need to wait out the restart delay.
            self._leave_job(s)
        self._start_many([s.name], retry_failed=True)

    def _t_stop(self, s: Service, job: Job) -> None:
        s.explicit = False
        s.held = True
        s.resume = False
        self.closure = self._compute_closure()
        released = [x for x in self._released() if x is not s]
        if s.state in st.DOWN:
            if released:
                self.post(self._stop_set, released, False)
            if s.state == st.BLOCKED:
                self._set_state(s, st.STOPPED)
            else:
                self._end_job(job, jobs.DONE)
            return
        self._stop_set([s, *released])

    def _t_restart(self, s: Service, job: Job) -> None:
        # A restart leaves activation alone (a service that is up only
        # because something needs it stays released with it), unless it was
        # on its way down: then it is a start.
        if s.held or s.name not in self.closure:
            s.explicit = True
        s.held = False
        self.closure = self._compute_closure()
        rj = self._make_job({s.name}, set(), 0.0)
        self._run_job(rj)

    # ----------------------------------------------------------- life cycle
    def start_all(self) -> None:
        """Boot: every enabled service is explicitly active."""
        for s in self.services.values():
            if s.cfg.enabled and s.load_error is None and not s.cfg.masked:
                s.explicit = True
        self.closure = self._compute_closure()
        self.post(self._start_many, sorted(self.closure), True)

    def begin_shutdown(self) -> None:
        self.post(self._t_shutdown)

    def _t_shutdown(self) -> None:
        self.shutting_down = True
        for job in list(self.jobs.values()):
            if job.kind != "stop":
                self._end_job(job, jobs.CANCELED, "the system is shutting down")
        for s in self.services.values():
            s.explicit = False
            s.resume = False
            if s.restart_job is not None:
                s.restart_job = None
                if s.state == st.RESTARTING:
                    self._disarm(s)
                    self._settle_stopped(s)
        self.closure = set()
        self._stop_set(list(self.services.values()))

    def all_down(self, names: Iterable[str] | None = None) -> bool:
        pool = self.services.values() if names is None else (self.services[n] for n in names if n in self.services)
        return all(s.state in st.DOWN for s in pool)

    def adopt(self, name: str, pid: int | None, main_pid: int | None, state: str = st.RUNNING) -> int:
        """Take over a service the previous svmgr ran: a finished oneshot
        (``pid`` None) or a running process (``state``: running, or starting
        for a oneshot still at work). Returns the generation to report its
        exit with."""
        s = self.services[name]
        s.gen += 1
        if pid is None:
            self._set_state(s, st.EXITED)
        else:
            s.pid = pid
            s.main_pid_ = main_pid if main_pid != pid else None
            if state == st.STARTING:
                s.start_exited = False
                self._set_state(s, st.STARTING)
                timeout = s.cfg.readiness.timeout
                self._arm(s, timeout, "start", f"start timeout after {format_duration(timeout)}")
            else:
                self._set_state(s, st.RUNNING)
        return s.gen

    # --------------------------------------------------------------- start
    def _start_many(self, names: Iterable[str], retry_failed: bool) -> None:
        """Start services and whatever they require or want (phase 1 walks the
        graph with a stack, phase 2 sets the frontier, phase 3 spawns the
        services with no unmet dependency)."""
        if self.shutting_down:
            return
        roots = set(names)
        batch: list[Service] = []
        seen: set[str] = set()
        stack = sorted(roots, reverse=True)
        pulls = self.index.pulls
        while stack:
            n = stack.pop()
            if n in seen or n not in self.services:
                continue
            seen.add(n)
            s = self.services[n]
            if n in self.frozen or s.load_error is not None or s.cfg.masked:
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
            stack.extend(pulls[n])
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
        topo = self.index.topo
        for s in sorted(spawnable, key=lambda x: topo[x.name]):
            if s.state == st.PENDING and not s.waiting_on:
                self._spawn(s)

    def _unmet(self, s: Service) -> tuple[set[str], str | None]:
        waiting: set[str] = set()
        requires = self.index.requires[s.name]
        for d in self.index.deps[s.name]:
            ds = self.services[d]
            if ds.state in st.UP:
                continue
            if d in requires:
                if ds.load_error is not None:
                    return waiting, f"requires {d}, which failed to load"
                if ds.cfg.masked:
                    return waiting, f"requires {d}, which is masked"
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
            for e in self.index.req_by[svc.name]:
                es = self.services[e]
                if es.state == st.PENDING:
                    stack.append((es, f"requires {svc.name}, which is blocked"))
            self.post(self._release_ordering_waiters, svc)

    def _settle_stopped(self, s: Service) -> None:
        """A service without a process (restarting) will not come back: it
        is stopped, and whoever waited for it goes on or is blocked."""
        self._set_state(s, st.STOPPED, s.reason)
        self.post(self._release_ordering_waiters, s)

    def _release_ordering_waiters(self, d: Service) -> None:
        """``d`` settled without coming up: services that only ordered
        themselves after it go on; those that require it are blocked."""
        if not self._live(d) or d.state in st.UP:
            return
        topo = self.index.topo
        for e in sorted(self.index.rdeps.get(d.name, ()), key=topo.__getitem__):
            es = self.services[e]
            if es.state != st.PENDING or d.name not in es.waiting_on:
                continue
            if d.name in self.index.requires[e]:
                if self._coming_back(d):
                    continue
                what = {st.FAILED: "failed", st.BLOCKED: "is blocked"}.get(d.state, "was stopped")
                if d.load_error is not None:
                    what = "failed to load"
                elif d.cfg.masked:
                    what = "is masked"
                self._block(es, f"requires {d.name}, which {what}")
            else:
                es.waiting_on.discard(d.name)
                if not es.waiting_on and not self.shutting_down:
                    self._spawn(es)

    def _coming_back(self, d: Service) -> bool:
        """``d`` is down (or on its way down) but will be started again
        without anyone asking: a restart job, a reload, or a resume."""
        if d.state == st.RESTARTING or d.name in self.frozen:
            return True
        return d.state in (st.STOPPED, st.STOPPING) and d.resume and d.name in self.closure and not d.held

    def _on_up(self, d: Service) -> None:
        if not self._live(d) or d.state not in st.UP:
            return
        topo = self.index.topo
        for e in sorted(self.index.rdeps[d.name], key=topo.__getitem__):
            es = self.services[e]
            if es.state == st.PENDING and d.name in es.waiting_on:
                es.waiting_on.discard(d.name)
                if not es.waiting_on and not self.shutting_down:
                    self._spawn(es)
        retry = [e for e in self.index.req_by[d.name]
                 if self.services[e].state == st.BLOCKED and e in self.closure]
        if retry:
            self.post(self._start_many, retry, False)

    def _spawn(self, s: Service) -> None:
        s.gen += 1
        s.exit = None
        s.pending_failure = None
        s.fail_kind = ""
        s.stop_sent = s.signal_sent = False
        s.start_exited = False
        s.pid = s.main_pid_ = None
        s.status_text = s.substate = ""
        s.resume = False
        s.spawn_pending = True
        self._set_state(s, st.STARTING)
        self.effects.append(fx.Spawn(s.name, s.gen))

    # -------------------------------------------------------------- events
    # Called by the executor and the plugin context; each queues the event.
    def on_spawned(self, name: str, gen: int, pid: int) -> None:
        self.post(self._e_spawned, name, gen, pid)

    def on_spawn_failed(self, name: str, gen: int, reason: str) -> None:
        self.post(self._e_spawn_failed, name, gen, reason)

    def on_exit(self, name: str, gen: int, pid: int, status: int | None, hint: str = "") -> None:
        self.post(self._e_exit, name, gen, pid, status, hint)

    def on_ready(self, name: str, gen: int) -> None:
        self.post(self._e_ready, name, gen)

    def on_ready_failed(self, name: str, gen: int, reason: str) -> None:
        self.post(self._e_ready_failed, name, gen, reason)

    def on_timer(self, name: str, token: int) -> None:
        self.post(self._e_timer, name, token)

    def on_pid_file(self, name: str, gen: int, pid: int | None, error: str) -> None:
        self.post(self._e_pid_file, name, gen, pid, error)

    def on_main_pid(self, name: str, pid: int) -> None:
        self.post(self._e_main_pid, name, pid)

    def on_main_pid_missing(self, name: str, gen: int, pid: int) -> None:
        self.post(self._e_main_pid_missing, name, gen, pid)

    def on_fail(self, name: str, reason: str) -> None:
        self.post(self._e_fail, name, reason)

    def on_extend_timeout(self, name: str, seconds: float) -> None:
        self.post(self._e_extend_timeout, name, seconds)

    def on_stop_exec_failed(self, name: str, gen: int, message: str) -> None:
        self.post(self._e_stop_exec_failed, name, gen, message)

    def _current(self, name: str, gen: int) -> Service | None:
        s = self.services.get(name)
        return s if s is not None and s.gen == gen else None

    def _e_spawned(self, name: str, gen: int, pid: int) -> None:
        s = self._current(name, gen)
        if s is None or not s.spawn_pending:
            # Nobody wants this process any more (called off meanwhile).
            self.effects.append(fx.Kill(name, signal.SIGKILL, (pid,)))
            return
        s.spawn_pending = False
        s.pid = pid
        self.effects.append(fx.Started(name, gen, pid))
        timeout = s.cfg.readiness.timeout
        if kind_of(s.cfg).start_timer:
            self._arm(s, timeout, "start", f"start timeout after {format_duration(timeout)}")
        else:
            self._await_ready(s)

    def _e_spawn_failed(self, name: str, gen: int, reason: str) -> None:
        s = self._current(name, gen)
        if s is None or not s.spawn_pending:
            return
        s.spawn_pending = False
        self.log(f"{name}: cannot start: {reason}")
        self._handle_failure(s, f"spawn failed: {reason}", clean=False)

    def _await_ready(self, s: Service) -> None:
        self._set_state(s, st.WAITING_READY)
        s.ready_wait = True
        self.effects.append(fx.AwaitReady(s.name, s.gen))
        if not kind_of(s.cfg).start_timer:
            timeout = s.cfg.readiness.timeout
            self._arm(s, timeout, "start", f"readiness timeout after {format_duration(timeout)}")

    def _e_ready(self, name: str, gen: int) -> None:
        s = self._current(name, gen)
        if s is None or s.state != st.WAITING_READY or not s.ready_wait:
            return
        s.ready_wait = False
        if kind_of(s.cfg).needs_main_pid() and s.main_pid_ is None:
            self._kill_for_failure(s, "forking service became ready without a main PID")
            return
        self._disarm(s)
        self._set_state(s, st.RUNNING)
        self.post(self._on_up, s)

    def _e_ready_failed(self, name: str, gen: int, reason: str) -> None:
        s = self._current(name, gen)
        if s is None or s.state != st.WAITING_READY or not s.ready_wait:
            return
        s.ready_wait = False
        self._kill_for_failure(s, reason)

    def _e_timer(self, name: str, token: int) -> None:
        s = self.services.get(name)
        if s is None or s.timer != token:
            return
        s.timer = 0
        if s.timer_kind == "start":
            if s.state in (st.STARTING, st.WAITING_READY):
                s.fail_kind = "timeout"
                self._kill_for_failure(s, s.timer_reason)
        elif s.timer_kind == "stop-signal":
            self._signal_stop(s)
        elif s.timer_kind == "stop-kill":
            self._stop_timeout(s)

    def _e_extend_timeout(self, name: str, seconds: float) -> None:
        """EXTEND_TIMEOUT_USEC: push the current start or stop deadline."""
        s = self.services.get(name)
        if s is None:
            return
        new = self.clock.now() + seconds
        if new <= s.deadline or not s.timer:
            return
        self._arm(s, seconds, s.timer_kind, s.timer_reason)

    def _e_exit(self, name: str, gen: int, pid: int, status: int | None, hint: str) -> None:
        """A process of the service exited; ``status`` is None when it was
        not our child and its exit status cannot be known."""
        s = self._current(name, gen)
        if s is None:
            return
        desc = describe_status(status) if status is not None else "exited (status unknown)"
        kind = kind_of(s.cfg)
        if (
            pid == s.pid
            and kind.start_process
            and s.state == st.STARTING
            and s.main_pid_ != pid
            and s.pending_failure is None
        ):
            # The start process of a forking service: its exit is not the end.
            s.start_exited = True
            if status != 0:
                s.exit = desc
                self._handle_failure(s, f"start process {desc}", clean=False)
            elif s.main_pid_ is not None:
                # MAINPID= (sd_notify) named the daemon before its parent exited.
                self._await_ready(s)
            elif s.cfg.pid_file:
                self.effects.append(fx.ReadPidFile(name, gen, s.cfg.pid_file))
            elif s.cfg.readiness.type == "none":
                self._handle_failure(
                    s, "forking service needs pid-file (or MAINPID= through the notify readiness type)",
                    clean=False,
                )
            else:
                self._await_ready(s)
            return
        if pid == s.pid and kind.start_process and s.main_pid_ != pid:
            s.start_exited = True
            if s.main_pid_ is not None or s.state not in st.ALIVE:
                return
        if pid != s.main_pid:
            return
        s.exit = desc
        if hint and s.state != st.STOPPING:
            desc = f"{hint} ({desc})"
        if s.pending_failure is not None:
            self._handle_failure(s, s.pending_failure, clean=False)
        elif s.state == st.STOPPING:
            self._went_down(s, st.STOPPED, s.reason)
        elif kind.runs_to_completion and s.state == st.STARTING:
            if status == 0:
                self._disarm(s)
                self._set_state(s, st.EXITED)
                self.post(self._on_up, s)
            else:
                self._handle_failure(s, desc, clean=False)
        elif s.state in (st.STARTING, st.WAITING_READY):
            # Gone before it was ready: a failed start, whatever the status.
            self._handle_failure(s, desc if status else f"{desc} before it was ready", clean=False)
        elif s.state in st.ALIVE:
            self._handle_failure(s, desc, clean=status == 0)

    def _e_pid_file(self, name: str, gen: int, pid: int | None, error: str) -> None:
        s = self._current(name, gen)
        if s is None or s.state != st.STARTING:
            return
        if pid is None:
            self._handle_failure(s, error, clean=False)
            return
        self._adopt_main_pid(s, pid)
        self._await_ready(s)

    def _e_main_pid(self, name: str, pid: int) -> None:
        s = self.services.get(name)
        if s is not None:
            self._adopt_main_pid(s, pid)

    def _adopt_main_pid(self, s: Service, pid: int) -> None:
        if pid == s.main_pid_ or s.state not in st.ALIVE or s.spawn_pending:
            return
        s.main_pid_ = pid
        self.effects.append(fx.WatchPid(s.name, s.gen, pid))

    def _e_main_pid_missing(self, name: str, gen: int, pid: int) -> None:
        s = self._current(name, gen)
        if s is None or pid != s.main_pid or s.state not in st.ALIVE:
            return
        if s.state == st.STOPPING and s.pending_failure is None:
            self._went_down(s, st.STOPPED, s.reason)
            return
        self._handle_failure(s, s.pending_failure or f"main PID {pid} is not running", clean=False)

    def _e_fail(self, name: str, reason: str) -> None:
        """A plugin declared a running service failed: stop it gracefully and
        report the failure when it is gone."""
        s = self.services.get(name)
        if s is None or s.state not in (st.WAITING_READY, st.RUNNING):
            return
        s.pending_failure = reason
        self._do_stop(s)

    def _e_stop_exec_failed(self, name: str, gen: int, message: str) -> None:
        s = self._current(name, gen)
        if s is None or s.state != st.STOPPING or s.signal_sent:
            return
        self._disarm(s)
        self.service_log(name, f"{message}; sending {signal_name(s.cfg.shutdown.stop_signal)}")
        self._signal_stop(s)

    # ---------------------------------------------------------------- kill
    def _kill(self, s: Service, sig: int) -> None:
        pids = tuple(p for p in (s.pid, s.main_pid_) if p is not None)
        if pids:
            self.effects.append(fx.Kill(s.name, sig, pids))

    def _kill_for_failure(self, s: Service, reason: str) -> None:
        if s.ready_wait:
            # What the detector says once the process is killed is not news.
            s.ready_wait = False
            self.effects.append(fx.CancelReady(s.name, s.gen))
        if s.pending_failure is None:
            s.pending_failure = reason
        self._kill(s, signal.SIGKILL)
        if self._no_main_process(s):
            self._handle_failure(s, reason, clean=False)

    def _no_main_process(self, s: Service) -> bool:
        """A forking service whose start process exited before anything
        named its daemon: no exit is left to wait for, so a stop or a failed
        start must conclude at once."""
        return (
            kind_of(s.cfg).start_process
            and s.main_pid_ is None
            and s.pid is not None
            and s.start_exited
        )

    def _teardown(self, s: Service, kill_leftovers: bool) -> None:
        self._disarm(s)
        if s.gen:
            self.effects.append(fx.Teardown(s.name, s.gen))
        s.ready_wait = False
        if kill_leftovers and s.pid is not None:
            # The main process is gone; what it left in its process group
            # goes with it (KillMode=control-group without cgroups).
            self._kill(s, signal.SIGKILL)
        s.stop_sent = s.signal_sent = False

    def _went_down(self, s: Service, state: str, reason: str = "") -> None:
        """The single path by which a service ends up without a process."""
        if not self._live(s):
            return
        self._teardown(s, kill_leftovers=False)
        s.pid = s.main_pid_ = None
        s.spawn_pending = False
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
                # Failed for good, or no longer wanted: the others go on alone.
                self._leave_job(s)
        rj = s.restart_job
        self._set_state(s, state, reason)
        self.effects.append(fx.Stopped(s.name))
        # Dependents first: hard ones stop (and come back with us).
        up_dependents = [self.services[e] for e in self.index.req_by[s.name]
                         if self.services[e].alive_or_exited]
        if up_dependents:
            self.post(self._stop_set, up_dependents, True)
        self.post(self._release_ordering_waiters, s)
        # Our dependencies may have been waiting for us to stop first.
        for d in self.index.deps[s.name]:
            ds = self.services[d]
            if ds.state == st.STOPPING and not ds.stop_sent and s.name in ds.stop_wait:
                ds.stop_wait.discard(s.name)
                if not ds.stop_wait:
                    self.post(self._stop_when_clear, ds)
        if rj is not None and s.state == st.RESTARTING:
            rj.waiting.discard(s.name)
            self._run_job(rj)
        if s.resume and s.state == st.STOPPED:
            self.post(self._resume, s)
        if s.removed and s.state in st.DOWN:
            self._forget(s)

    def _resume(self, s: Service) -> None:
        # ``resume`` stays set until now: meanwhile dependents waiting for
        # ``s`` see it coming back (_coming_back) and keep waiting.
        if not self._live(s) or not s.resume or s.state != st.STOPPED:
            return
        s.resume = False
        if s.name in self.closure:
            self._start_many([s.name], retry_failed=False)

    # ---------------------------------------------------------------- stop
    def _stop_set(self, targets: Iterable[Service], resume: bool = False) -> None:
        """Stop services and, first, everything alive that requires them."""
        batch: list[Service] = []
        seen: set[str] = set()
        stack = [(s, resume) for s in targets if self._live(s)]
        req_by = self.index.req_by
        while stack:
            s, res = stack.pop()
            if s.name in seen:
                continue
            seen.add(s.name)
            if res:
                s.resume = True
            batch.append(s)
            for e in req_by[s.name]:
                es = self.services[e]
                if es.state in st.ALIVE or es.state in (st.EXITED, st.PENDING):
                    stack.append((es, True))
        to_stop: list[Service] = []
        for s in batch:
            if s.state == st.PENDING:
                self._went_down(s, st.STOPPED)
            elif s.state == st.RESTARTING:
                self._leave_job(s)
                self._disarm(s)
                self._settle_stopped(s)
            elif s.state == st.BLOCKED and s.name not in self.closure:
                self._set_state(s, st.STOPPED)
            elif s.state in (st.STARTING, st.WAITING_READY, st.RUNNING, st.EXITED):
                s.stop_sent = s.signal_sent = False
                self._set_state(s, st.STOPPING, s.reason if s.pending_failure else "")
                to_stop.append(s)
        rdeps = self.index.rdeps
        for s in to_stop:
            if s.state != st.STOPPING or s.stop_sent:
                continue
            s.stop_wait = {e for e in rdeps[s.name] if self.services[e].state == st.STOPPING}
            if not s.stop_wait:
                self._do_stop(s)

    def _stop_when_clear(self, s: Service) -> None:
        if self._live(s) and s.state == st.STOPPING and not s.stop_sent and not s.stop_wait:
            self._do_stop(s)

    def _do_stop(self, s: Service) -> None:
        s.stop_sent = True
        if s.state != st.STOPPING:
            self._set_state(s, st.STOPPING)
        if s.ready_wait:
            s.ready_wait = False
            self.effects.append(fx.CancelReady(s.name, s.gen))
        if s.spawn_pending:
            # Called off before the process existed: the spawn is dropped.
            s.gen += 1
            self._went_down(s, st.STOPPED, s.reason)
            return
        if s.pid is None or (kind_of(s.cfg).runs_to_completion and s.exit is not None):
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
        if sh.stop_exec:
            self.effects.append(fx.RunStopExec(s.name, s.gen, sh.stop_timeout))
            self._arm(s, sh.stop_timeout, "stop-signal")
        else:
            self._signal_stop(s)

    def _signal_stop(self, s: Service) -> None:
        if s.state != st.STOPPING or s.pid is None:
            return
        s.signal_sent = True
        self._kill(s, s.cfg.shutdown.stop_signal)
        self._arm(s, s.cfg.shutdown.stop_timeout, "stop-kill")

    def _stop_timeout(self, s: Service) -> None:
        if s.state != st.STOPPING or s.pid is None:
            return
        t = format_duration(s.cfg.shutdown.stop_timeout)
        self.service_log(s.name, f"still running {t} after stop; killing")
        s.reason = f"killed after stop timeout ({t})"
        self._kill(s, signal.SIGKILL)

    def _released(self) -> list[Service]:
        """Services up (or on their way) that nothing active needs any more."""
        return [
            s
            for n, s in self.services.items()
            if n not in self.closure
            and (s.alive_or_exited or s.state in (st.PENDING, st.RESTARTING))
        ]

    def _forget(self, s: Service) -> None:
        if self.services.get(s.name) is s:
            del self.services[s.name]
            self.effects.append(fx.Forget(s.name))
            self._rebuild()

    # -------------------------------------------------------------- reload
    def reload_begin(self, config: SystemConfig) -> list[str]:
        """First half of a reload: stop removed services and changed ones
        that are up, freezing the changed ones (nothing starts them with
        their old configuration meanwhile). Returns the names to wait for."""
        new = config.services
        refused = getattr(config, "refused", {})
        removed = [n for n in self.services if n not in new and n not in refused]
        changed = [n for n, s in self.services.items() if n in new and new[n] != s.cfg]
        # A refused file for a service that runs: it stops, and shows why.
        changed += [n for n in self.services if n in refused and n not in new
                    and self.services[n].load_error is None]
        for n in removed:
            s = self.services[n]
            s.explicit = False
            s.held = True
            s.removed = True
        self._reload_removed = sorted(removed)
        restart = [n for n in changed
                   if self.services[n].alive_or_exited or self.services[n].state in (st.PENDING, st.RESTARTING)]
        self.frozen = set(restart)
        self.closure = self._compute_closure()
        targets = [self.services[n] for n in removed + restart]
        self.post(self._stop_set, targets, False)
        return [s.name for s in targets]

    def reload_finish(self, config: SystemConfig) -> dict[str, list[str]]:
        """Second half: swap configurations, rebuild the graph, start what is
        new or changed and desired, release what nothing needs any more."""
        self.frozen = set()
        new = config.services
        refused = getattr(config, "refused", {})
        removed = set(self._reload_removed)
        self._reload_removed = []
        changed, added = [], []
        for n in list(self.services):
            s = self.services[n]
            if n not in new and n not in refused:
                removed.add(n)
                if s.state in st.DOWN:
                    self._forget(s)
        for n, cfg in new.items():
            s = self.services.get(n)
            if s is None:
                added.append(n)
                s = self.services[n] = Service(cfg, self.clock.wall())
                s.explicit = cfg.enabled
                continue
            if s.load_error is not None:
                # Its file was fixed.
                changed.append(n)
                s.load_error = None
                s.explicit = cfg.enabled
                s.cfg = cfg
                s.restarts.reset()
                self._set_state(s, st.STOPPED)
                continue
            if cfg != s.cfg:
                changed.append(n)
                if s.cfg.enabled != cfg.enabled:
                    s.explicit = cfg.enabled
                s.cfg = cfg
                s.restarts.reset()
                if s.state == st.FAILED:
                    self._set_state(s, st.STOPPED)
        for n in refused:
            s = self.services.get(n)
            if s is None:
                added.append(n)
            elif s.load_error is None:
                changed.append(n)
        self._apply_supervisors(config.supervisors)
        self._add_refused(config)
        for n in refused:
            s = self.services[n]
            if s.state != st.FAILED:
                self._set_state(s, st.FAILED, f"configuration refused: {s.load_error}")
        self._rebuild()
        self.closure = self._compute_closure()
        released = self._released()
        if released:
            self._stop_set(released)
        start = sorted(n for n in (*changed, *added) if n in self.closure)
        self._start_many(start, retry_failed=True)
        # What requires a service whose file was fixed may start now.
        blocked = sorted(n for n, s in self.services.items() if s.state == st.BLOCKED and n in self.closure)
        if blocked:
            self.post(self._start_many, blocked, False)
        return {"added": sorted(added), "removed": sorted(removed), "changed": sorted(changed)}

    # ---------------------------------------------------- unit file verbs
    def reset_failed(self, names: Iterable[str]) -> list[str]:
        """``failed`` services become ``stopped`` with their restart budget
        and count reset (``systemctl reset-failed``). One whose file was
        refused stays failed: its file is what is wrong. Returns the names
        reset."""
        done = []
        for n in names:
            s = self.services.get(n)
            if s is None or s.state != st.FAILED or s.load_error is not None:
                continue
            s.restarts.reset()
            s.restart_count = 0
            s.exit = None
            self._set_state(s, st.STOPPED, "failed state reset")
            done.append(n)
        return done

    def set_unit_state(self, name: str, enabled: bool, masked: bool) -> None:
        """Record enable/disable/mask on the running service: it takes effect
        at the next start (mask: at once for starts) and never stops or
        starts anything by itself; a reload then sees nothing changed."""
        s = self.services[name]
        s.cfg = replace(s.cfg, enabled=enabled, masked=masked)

    # ------------------------------------------------------------- queries
    def tree(self) -> dict[str, Any]:
        now = self.clock.now()
        root: dict[str, Any] = self.supervisors[ROOT_SUPERVISOR].info(now)
        stack = [(ROOT_SUPERVISOR, root)]
        while stack:
            sup, node = stack.pop()
            children: list[dict[str, Any]] = []
            for kind, n in self.index.children.get(sup, ()):
                if kind == "service":
                    s = self.services[n]
                    children.append({"name": n, "kind": "service", "state": s.state,
                                     "reason": s.reason, "restarts": s.restart_count})
                elif n in self.supervisors:
                    child = self.supervisors[n].info(now)
                    children.append(child)
                    stack.append((n, child))
            node["children"] = children
        return root


def masked_message(name: str) -> str:
    return f"{name} is masked: it cannot be started ('dynamodctl unmask {name}' allows it again)"


def refused_config(name: str, ref: Any, supervisors: dict[str, Supervisor]) -> ServiceConfig:
    """A stand-in configuration for a unit whose file was refused: it keeps
    what could be read of its dependencies so that the graph shows them."""
    from dynamod.config.model import DependencyConfig

    deps = getattr(ref, "dependencies", None)
    if not isinstance(deps, DependencyConfig):
        deps = DependencyConfig()
    sup = getattr(ref, "supervisor", None) or ROOT_SUPERVISOR
    if sup not in supervisors:
        sup = ROOT_SUPERVISOR
    return ServiceConfig(name=name, exec=("/bin/false",), source=getattr(ref, "source", ""),
                         supervisor=sup, dependencies=deps)
