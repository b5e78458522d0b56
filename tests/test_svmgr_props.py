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
ROOT_SLEEP = 0.4  # long enough that serial root starts would show


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


def write_config(root: Path, names, edges, sleeps, rec: Path) -> None:
    tree = ConfigTree(root)
    for name, deps, sleep in zip(names, edges, sleeps, strict=True):
        if not deps:
            sleep = ROOT_SLEEP
        script = f"{stamp(rec, name + ' start')}; sleep {sleep}; {stamp(rec, name + ' ready')}"
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
@given(graphs())
def test_frontier_start_respects_dependencies_and_is_parallel(graph):
    names, edges, sleeps = graph
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rec = tmp / "rec"
        write_config(tmp / "etc", names, edges, sleeps, rec)
        with Svmgr(tmp / "etc", tmp / "run", args=BARE) as mgr, mgr.client() as c:
            c.request("Subscribe")
            assert c.request("StartService", {"name": "all"}).body["service"]["state"] == "exited"
            spawned: dict[str, float] = {}
            ready: dict[str, float] = {}
            # Events sent before the reply are already queued.
            for msg in c.events(timeout=5):
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
    # Every service whose dependencies are all met at the same moment is
    # spawned at once: the roots together, well within one root's run time.
    roots = [n for n, deps in zip(names, edges, strict=True) if not deps]
    spread = max(spawned[n] for n in roots) - min(spawned[n] for n in roots)
    assert spread < ROOT_SLEEP / 2, f"roots spawned over {spread:.3f}s"
    root_starts = [stamps[f"{n} start"] for n in roots]
    first_root_ready = min(stamps[f"{n} ready"] for n in roots)
    assert max(root_starts) < first_root_ready
    # A service is spawned as soon as its last dependency is ready (nothing
    # waits for unrelated services).
    for name, deps in zip(names, edges, strict=True):
        if deps:
            last = max(ready[d] for _k, d in deps)
            assert spawned[name] - last < 0.25, (name, spawned[name] - last)


@settings(
    max_examples=examples(8),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(graphs())
def test_shutdown_stops_in_reverse_dependency_order(graph):
    names, edges, sleeps = graph
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rec = tmp / "rec"
        tree = ConfigTree(tmp / "etc")
        for name, deps, sleep in zip(names, edges, sleeps, strict=True):
            script = (
                f"trap '{stamp(rec, name + ' term')}; sleep {sleep}; {stamp(rec, name + ' exit')}; exit 0' TERM; "
                f"{stamp(rec, name + ' up')}; while :; do sleep 0.05; done"
            )
            table = ["[dependencies]"]
            for kind in ("requires", "wants", "after"):
                ds = [d for k, d in deps if k == kind]
                if ds:
                    table.append(f"{kind} = [" + ", ".join(f'"{d}"' for d in ds) + "]")
            tree.simple(name, script, extra="\n".join(table) + "\n")
        with Svmgr(tmp / "etc", tmp / "run", args=BARE) as mgr:
            for n in names:
                mgr.wait_state(n, "running")
            wait_stamps(rec, [n + " up" for n in names])
            assert mgr.stop() == 0
        stamps = dict(read_stamps(rec))
    assert len(stamps) == 3 * len(names)
    for name, deps in zip(names, edges, strict=True):
        for _kind, d in deps:
            assert stamps[f"{d} term"] > stamps[f"{name} exit"], (name, d)
    # Services nothing depends on are all signalled at once.
    leaves = set(names) - {d for deps in edges for _k, d in deps}
    terms = [stamps[f"{n} term"] for n in leaves]
    assert max(terms) - min(terms) < 300_000_000


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
