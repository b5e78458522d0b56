"""Property tests of the start frontier over random dependency graphs, with
real processes: no service starts before what it depends on is ready, and
independent services start together (no artificial serialisation)."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamod.ipc.client import RemoteError
from dynamod.testing import ConfigTree, Svmgr, read_stamps, stamp, wait_stamps

BARE = ["--no-plugins"]


def examples(default: int) -> int:
    """Kept small for the suite; DYNAMOD_SVMGR_EXAMPLES=200 searches longer."""
    return int(os.environ.get("DYNAMOD_SVMGR_EXAMPLES", default))


@st.composite
def graphs(draw):
    """``n`` services; each may depend (requires / wants / after) on up to
    three earlier ones. Names are a random permutation so that name order
    says nothing about dependency order."""
    n = draw(st.integers(3, 12))
    perm = draw(st.permutations(range(n)))
    names = [f"s{perm[i]:02d}" for i in range(n)]
    edges: list[list[tuple[str, str]]] = []
    for i in range(n):
        if i == 0:
            edges.append([])
            continue
        targets = draw(st.lists(st.integers(0, i - 1), max_size=min(i, 3), unique=True))
        kinds = draw(
            st.lists(
                st.sampled_from(["requires", "requires", "wants", "after"]),
                min_size=len(targets),
                max_size=len(targets),
            )
        )
        edges.append([(k, names[t]) for k, t in zip(kinds, targets, strict=True)])
    sleeps = draw(st.lists(st.sampled_from([0, 0.02, 0.05]), min_size=n, max_size=n))
    return names, edges, sleeps


def write_config(root: Path, names, edges, rec: Path, gates: Path) -> None:
    """Each service a oneshot that stamps ``start``, waits until the test
    opens its gate (the file ``gates/NAME``), stamps ``ready`` and exits."""
    tree = ConfigTree(root)
    gates.mkdir()
    for name, deps in zip(names, edges, strict=True):
        script = (
            f"{stamp(rec, name + ' start')}; "
            f"while [ ! -e {gates / name} ]; do sleep 0.02; done; {stamp(rec, name + ' ready')}"
        )
        table = ["[dependencies]"]
        for kind in ("requires", "wants", "after"):
            ds = [d for k, d in deps if k == kind]
            if ds:
                table.append(f"{kind} = [" + ", ".join(f'"{d}"' for d in ds) + "]")
        tree.simple(name, script, type="oneshot", enabled=False, extra="\n".join(table) + "\n")
    # One target pulls everything in, so that a subscriber sees every
    # transition of the frontier start from the beginning.
    tree.simple(
        "all",
        "true",
        type="oneshot",
        enabled=False,
        extra="[dependencies]\nwants = [" + ", ".join(f'"{n}"' for n in names) + "]\n",
    )


@settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(graphs(), st.randoms(use_true_random=False))
def test_frontier_start_respects_dependencies_and_is_parallel(graph, rng):
    # The test opens one gate at a time, only once every service whose
    # dependencies are all done has started: so the whole frontier runs at
    # once (roots together), and nothing waits for an unrelated service
    # (every other one is held at its gate: a start waiting for one would
    # never come, and the wait for it would time out).
    names, edges, _sleeps = graph
    deps_of = {n: {d for _k, d in deps} for n, deps in zip(names, edges, strict=True)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rec, gates = tmp / "rec", tmp / "gates"
        write_config(tmp / "etc", names, edges, rec, gates)
        with Svmgr(tmp / "etc", tmp / "run", args=BARE) as mgr, mgr.client() as c:
            c.request("Subscribe")
            reply: dict = {}
            starter = threading.Thread(
                target=lambda: reply.update(mgr.request("StartService", {"name": "all"}))
            )
            starter.start()
            try:
                done: list[str] = []
                while len(done) < len(names):
                    frontier = {n for n in names if n not in done and deps_of[n] <= set(done)}
                    wait_stamps(rec, [n + " start" for n in frontier] + [n + " ready" for n in done])
                    began = {lab[: -len(" start")] for lab, _ in read_stamps(rec) if lab.endswith(" start")}
                    assert began == frontier | set(done), (sorted(began), sorted(frontier), done)
                    nxt = rng.choice(sorted(frontier))
                    (gates / nxt).touch()
                    done.append(nxt)
            finally:
                for n in names:
                    (gates / n).touch()
                starter.join(30)
            assert reply["service"]["state"] == "exited"
            spawned: dict[str, float] = {}
            ready: dict[str, float] = {}
            # Every event came before the reply: they are queued.
            for msg in c.events(timeout=30):
                ev = msg.body
                if ev["new"] == "starting":
                    spawned[ev["name"]] = ev["time"]
                elif ev["new"] == "exited":
                    ready[ev["name"]] = ev["time"]
                    if ev["name"] == "all":
                        break
            states = {n: s["state"] for n, s in mgr.services().items()}
        assert all(states[n] == "exited" for n in names), states
        stamps = dict(read_stamps(rec))  # each label appears once
    for name, deps in zip(names, edges, strict=True):
        for _kind, d in deps:
            # The service saw its dependency finish before it started...
            assert stamps[f"{name} start"] > stamps[f"{d} ready"], (name, d)
            # ...and the manager spawned it only after it saw that too.
            assert spawned[name] >= ready[d], (name, d)


@settings(
    max_examples=examples(8),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(graphs())
def test_shutdown_stops_in_reverse_dependency_order(graph):
    names, edges, sleeps = graph
    # Services nothing depends on hold their stop until the test opens a
    # gate, which it does only once every one of them got its TERM: so they
    # are all signalled at once (one waiting for another's stop would never
    # be signalled: their stop-timeout is an hour).
    leaves = set(names) - {d for deps in edges for _k, d in deps}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rec, gate = tmp / "rec", tmp / "gate"
        tree = ConfigTree(tmp / "etc")
        for name, deps, sleep in zip(names, edges, sleeps, strict=True):
            hold = f"while [ ! -e {gate} ]; do sleep 0.02; done" if name in leaves else f"sleep {sleep}"
            script = (
                f"trap '{stamp(rec, name + ' term')}; {hold}; {stamp(rec, name + ' exit')}; exit 0' TERM; "
                f"{stamp(rec, name + ' up')}; while :; do sleep 0.05; done"
            )
            table = ["[dependencies]"]
            for kind in ("requires", "wants", "after"):
                ds = [d for k, d in deps if k == kind]
                if ds:
                    table.append(f"{kind} = [" + ", ".join(f'"{d}"' for d in ds) + "]")
            if name in leaves:
                table.append('[shutdown]\nstop-timeout = "1h"')
            tree.simple(name, script, extra="\n".join(table) + "\n")
        with Svmgr(tmp / "etc", tmp / "run", args=BARE) as mgr:
            for n in names:
                mgr.wait_state(n, "running")
            wait_stamps(rec, [n + " up" for n in names])
            assert mgr.proc is not None
            mgr.proc.send_signal(signal.SIGTERM)
            try:
                wait_stamps(rec, [n + " term" for n in leaves])
                # Everything else waits for a leaf above it.
                termed = {lab[: -len(" term")] for lab, _ in read_stamps(rec) if lab.endswith(" term")}
                assert termed == leaves, (sorted(termed), sorted(leaves))
            finally:
                gate.touch()
            assert mgr.wait_exit(30) == 0
        stamps = dict(read_stamps(rec))
    assert len(stamps) == 3 * len(names)
    for name, deps in zip(names, edges, strict=True):
        for _kind, d in deps:
            assert stamps[f"{d} term"] > stamps[f"{name} exit"], (name, d)


@st.composite
def scenarios(draw):
    """A small graph of long-running services (each may require / want /
    be ordered after earlier ones, enabled or not) and a sequence of
    operations: start, stop, restart, or SIGKILL of a service."""
    n = draw(st.integers(3, 6))
    names = [f"v{i}" for i in draw(st.permutations(range(n)))]
    edges = []
    for i in range(n):
        targets = (
            draw(st.lists(st.integers(0, i - 1), max_size=min(i, 2), unique=True)) if i else []
        )
        kinds = draw(
            st.lists(
                st.sampled_from(["requires", "wants", "after"]),
                min_size=len(targets),
                max_size=len(targets),
            )
        )
        edges.append([(k, names[t]) for k, t in zip(kinds, targets, strict=True)])
    enabled = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["start", "stop", "restart", "kill"]),
                st.sampled_from(names),
                st.booleans(),
            ),
            min_size=1,
            max_size=8,
        )
    )
    # Stay well within the default restart intensities.
    kills = 0
    bounded = []
    for op in ops:
        if op[0] == "kill":
            kills += 1
            if kills > 2:
                continue
        bounded.append(op)
    # Group operations flagged concurrent (on distinct services, so the
    # expected outcome does not depend on their order): sent at once.
    groups: list[list[tuple[str, str]]] = []
    # Restarts and kills run alone: what a restart does to activation
    # depends on the state it finds the service in.
    for op, name, concurrent in bounded:
        if (
            concurrent
            and op in ("start", "stop")
            and groups
            and groups[-1][0][0] in ("start", "stop")
            and len(groups[-1]) < 4
            and name not in {n for _o, n in groups[-1]}
        ):
            groups[-1].append((op, name))
        else:
            groups.append([(op, name)])
    return names, edges, enabled, groups


def _expected(names, edges, enabled, ops):
    """The states a user expects once everything has settled (Dinit-style
    activation): explicit services and what they pull in run, unless a
    ``requires`` chain reaches an explicitly stopped service (blocked);
    everything else is stopped. ``start`` makes a service explicit, ``stop``
    holds it down; ``restart`` of a running service leaves its activation
    alone and is a ``start`` otherwise."""
    requires = {
        n: [d for k, d in deps if k == "requires"] for n, deps in zip(names, edges, strict=True)
    }
    pulls = {
        n: [d for k, d in deps if k in ("requires", "wants")]
        for n, deps in zip(names, edges, strict=True)
    }

    def states(explicit, held):
        closure: set[str] = set()
        stack = [n for n in explicit if n not in held]
        while stack:
            n = stack.pop()
            if n in closure or n in held:
                continue
            closure.add(n)
            stack.extend(pulls[n])

        def blocked(n):
            stack, seen = list(requires[n]), set()
            while stack:
                d = stack.pop()
                if d in held:
                    return True
                if d not in seen:
                    seen.add(d)
                    stack.extend(requires[d])
            return False

        return {
            n: ("blocked" if blocked(n) else "running") if n in closure else "stopped"
            for n in names
        }

    explicit = {n for n, e in zip(names, enabled, strict=True) if e}
    held: set[str] = set()
    for op, name in ops:
        if op == "restart" and states(explicit, held)[name] == "running":
            continue
        if op in ("start", "restart"):
            explicit.add(name)
            # Starting a service also wants what it requires, even services
            # that were stopped explicitly before (as systemctl/dinitctl do).
            stack, seen = [name], set()
            while stack:
                n = stack.pop()
                if n not in seen:
                    seen.add(n)
                    held.discard(n)
                    stack.extend(requires[n])
        elif op == "stop":
            explicit.discard(name)
            held.add(name)
    return states(explicit, held)


def _service_pgids(token: str) -> dict[str, set[int]]:
    """Live processes started for this test, by service: their process groups."""
    out: dict[str, set[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        if f"DYNAMOD_TEST_TOKEN={token}".encode() not in env:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            continue
        name = next(e for e in env if e.startswith(b"DYNAMOD_SERVICE=")).split(b"=", 1)[1].decode()
        out.setdefault(name, set()).add(int(fields[2]))
    return out


SETTLED = {"running", "stopped", "blocked", "failed"}


@settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenarios())
def test_random_operations_settle_in_the_expected_states(scenario):
    names, edges, enabled, groups = scenario
    ops = [op for group in groups for op in group]
    token = uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tree = ConfigTree(tmp / "etc")
        for name, deps, en in zip(names, edges, enabled, strict=True):
            table = ['[restart]\ndelay = "100ms"\n[dependencies]']
            for kind in ("requires", "wants", "after"):
                ds = [d for k, d in deps if k == kind]
                if ds:
                    table.append(f"{kind} = [" + ", ".join(f'"{d}"' for d in ds) + "]")
            tree.simple(
                name,
                enabled=en,
                environment={"DYNAMOD_TEST_TOKEN": token},
                extra="\n".join(table) + "\n",
            )
        with Svmgr(tmp / "etc", tmp / "run", args=BARE) as mgr:
            problems: list[str] = []

            def settled():
                a = {n: s["state"] for n, s in mgr.services().items()}
                if set(a.values()) - SETTLED:
                    return None
                time.sleep(0.3)
                b = {n: s["state"] for n, s in mgr.services().items()}
                return a == b and b

            def run(op, name, alone):
                if op == "kill":
                    pid = mgr.status(name)["pid"]
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)
                        # Let the restart happen before going on (what a
                        # later restart does depends on the state it finds).
                        mgr.wait_for(lambda: mgr.status(name)["pid"] != pid, what="kill noticed")
                        mgr.wait_for(settled, timeout=10, what="a settled state")
                    return
                request = {
                    "start": "StartService",
                    "stop": "StopService",
                    "restart": "RestartService",
                }[op]
                try:
                    mgr.request(request, {"name": name}, timeout=10)
                except RemoteError as exc:
                    # Only a start can fail: something it requires was
                    # stopped explicitly (concurrently: stopped meanwhile).
                    if (
                        op == "stop"
                        or exc.code != "failed"
                        or (alone and "blocked" not in exc.message)
                    ):
                        problems.append(f"{op} {name}: {exc}")
                except Exception as exc:  # a hang (TimeoutError) or worse
                    problems.append(f"{op} {name}: {type(exc).__name__}: {exc}")

            for group in groups:
                threads = [
                    threading.Thread(target=run, args=(op, name, len(group) == 1))
                    for op, name in group
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(15)
            assert not problems, f"{problems}\ngroups={groups}\n{mgr.log()}"
            states = mgr.wait_for(settled, timeout=10, what="a settled state")
            expected = _expected(names, edges, enabled, ops)
            assert states == expected, f"groups={groups}\n{mgr.log()}"
            pgids = _service_pgids(token)
            for n in names:
                info = mgr.status(n)
                if states[n] == "running":
                    # Exactly one instance, and it is the one the manager knows.
                    assert pgids.get(n) == {info["pid"]}, (n, pgids.get(n), info["pid"])
                else:
                    assert not pgids.get(n), (n, pgids.get(n))
