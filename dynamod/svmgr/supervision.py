"""Failures, restart policies and supervisor trees (part of the engine).

The rule, in the order it is applied when a service fails:

1. *Policy*: ``permanent`` restarts after any exit, ``transient`` after a
   failure only, ``temporary`` never (a oneshot's default). Not restarted:
   the service is ``failed`` (or ``stopped`` after a clean exit); nothing
   else is affected.
2. *The service's own budget*: ``restart.max-restarts`` within
   ``restart.max-restart-window``. Spent: the service has failed for good
   ("gave up after N restarts in W"); nothing else is affected.
3. *Its supervisor's budget*: ``max-restarts`` within
   ``max-restart-window`` of the supervisor. A supervisor that does not
   escalate (``escalate = false``, the default) gives each child a budget of
   its own: a child that spends it has failed for good, alone. A supervisor
   with ``escalate = true`` shares one budget among all its children, as an
   Erlang/OTP supervisor does: spent, the supervisor fails, its whole
   subtree is stopped and its parent applies its own strategy to it (a
   restart of the subtree, charged to the parent by the same rule). The root
   supervisor failing runs its ``on-failure`` action; with the defaults it
   never escalates, so no single service can take the system down.
4. *Strategy*: the supervisor restarts the failed child alone
   (``one-for-one``), all its children (``one-for-all``) or the failed
   child and those after it in dependency order (``rest-for-one``), as one
   :class:`~dynamod.svmgr.jobs.RestartJob`: once every member is down, wait
   ``restart.delay``, then start the wanted ones in one frontier start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dynamod.config.units import format_duration
from dynamod.svmgr import effects as fx
from dynamod.svmgr import states as st
from dynamod.svmgr.jobs import RestartJob

if TYPE_CHECKING:
    from dynamod.svmgr.engine import Engine
    from dynamod.svmgr.records import Service, Supervisor

    _Base = Engine
else:
    _Base = object


class Supervision(_Base):
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
        if s.cfg.masked:
            self._went_down(s, down, f"{reason}; not restarted: it is masked")
            return
        r = s.cfg.restart
        now = self.clock.now()
        if not s.restarts.charge(r.max_restarts, r.max_restart_window, now):
            self._went_down(
                s, st.FAILED,
                f"{reason}; gave up after {r.max_restarts} restarts in {format_duration(r.max_restart_window)}",
            )
            return
        sup = self.supervisors[s.cfg.supervisor]
        if not sup.charge(("service", s.name), now):
            budget = f"more than {sup.cfg.max_restarts} restarts in {format_duration(sup.cfg.max_restart_window)}"
            if sup.escalates:
                self._went_down(s, st.FAILED, reason)
                self.post(self._supervisor_failed, sup, f"{s.name} {reason}: {budget}")
            else:
                self._went_down(s, st.FAILED, f"{reason}; gave up: {budget} (supervisor {sup.name})")
            return
        s.restart_count += 1
        members, sups = self._strategy_group(sup, ("service", s.name))
        # ``s`` itself is already gone: it joins the job without a stop.
        job = self._make_job(members - {s.name}, sups, r.delay)
        job.members.add(s.name)
        s.restart_job = job
        self._went_down(s, st.RESTARTING, reason)
        self._run_job(job)

    def _strategy_group(self, sup: Supervisor, child: tuple[str, str]) -> tuple[set[str], set[str]]:
        kids = self.index.children.get(sup.name, [])
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
                sv, ss = self.index.subtree(n)
                services |= sv
                sups |= ss
        return services, sups

    def _make_job(self, members: set[str], sups: set[str], delay: float) -> RestartJob:
        # Only what is wanted (or running) takes part in a group restart.
        members = {m for m in members if m in self.services
                   and (m in self.closure or self.services[m].state in st.ALIVE)}
        job = RestartJob(members, sups, delay)
        alive: list[Service] = []
        for m in sorted(members):
            s = self.services[m]
            self._leave_job(s)
            s.restart_job = job
            s.resume = False
            # The restart supersedes a final state forced on the way down (a
            # failed child supervisor's services are restarted by its parent).
            s.down_state = None
            if s.alive_or_exited:
                job.waiting.add(m)
                alive.append(s)
            elif s.state != st.RESTARTING:
                s.waiting_on = set()
                self._set_state(s, st.RESTARTING, s.reason)
        for n in sups:
            if n in self.supervisors:
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
        job.token = self._next_token
        self._next_token += 1
        self.effects.append(fx.ArmJobTimer(job, job.token, job.delay))

    def on_restart_job_timer(self, job: RestartJob, token: int) -> None:
        self.post(self._fire_job, job, token)

    def _fire_job(self, job: RestartJob, token: int) -> None:
        if token != job.token:
            return
        for n in job.supervisors:
            if n in self.supervisors:
                sv = self.supervisors[n]
                sv.state, sv.reason = "running", ""
                sv.reset()  # a restarted supervisor starts with a fresh budget
        names = []
        for m in sorted(job.members):
            s = self.services.get(m)
            if s is None or s.restart_job is not job:
                continue
            s.restart_job = None
            if m in self.closure and not self.shutting_down and not s.cfg.masked:
                names.append(m)
            elif s.state == st.RESTARTING:
                self._settle_stopped(s)
        if names:
            self._start_many(names, retry_failed=True)

    def _supervisor_failed(self, sup: Supervisor, reason: str) -> None:
        """An escalating supervisor spent its budget: stop its subtree, then
        let the parent apply its own strategy to it (escalating further if
        the parent escalates and its budget is spent too)."""
        while True:
            sup.state, sup.reason = "failed", reason
            sup.failures += 1
            sup.last_failure = self.clock.wall()
            self.log(f"SUPERVISOR {sup.name} FAILED: {reason}")
            parent = self.supervisors.get(sup.cfg.parent) if sup.cfg.parent else None
            if parent is None:
                self._root_supervisor_failed(sup, reason)
                return
            services, _ = self.index.subtree(sup.name)
            if not parent.charge(("supervisor", sup.name), self.clock.now()):
                budget = (f"more than {parent.cfg.max_restarts} restarts in "
                          f"{format_duration(parent.cfg.max_restart_window)}")
                self._fail_services(services, f"supervisor {sup.name} failed")
                if not parent.escalates:
                    self.log(f"supervisor {parent.name} gives up on {sup.name}: {budget}")
                    return
                reason = f"child supervisor {sup.name} failed: {budget}"
                sup = parent
                continue
            members, sups = self._strategy_group(parent, ("supervisor", sup.name))
            delay = max((self.services[m].cfg.restart.delay for m in services if m in self.services),
                        default=1.0)
            job = self._make_job(members, sups | {sup.name}, delay)
            self._run_job(job)
            return

    def _fail_services(self, names: Iterable[str], reason: str) -> None:
        alive = []
        for n in names:
            s = self.services.get(n)
            if s is None:
                continue
            self._leave_job(s)
            if s.alive_or_exited:
                s.down_state = (st.FAILED, reason)
                alive.append(s)
            elif s.state in (st.PENDING, st.RESTARTING, st.STOPPED, st.BLOCKED) and n in self.closure:
                self._disarm(s)
                s.waiting_on = set()
                self._set_state(s, st.FAILED, reason)
                self.post(self._release_ordering_waiters, s)
        if alive:
            self._stop_set(alive)

    def _root_supervisor_failed(self, sup: Supervisor, reason: str) -> None:
        self.root_failed = reason
        services, _ = self.index.subtree(sup.name)
        self._fail_services(services, f"supervisor {sup.name} failed")
        self.alerts.append(("root-failed", reason))
