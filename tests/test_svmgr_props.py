"""Property tests of the start frontier over random dependency graphs, with
real processes: no service starts before what it depends on is ready, and
independent services start together (no artificial serialisation)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamod.testing import ConfigTree, Svmgr, read_stamps, stamp, wait_stamps

BARE = ["--no-plugins"]
ROOT_SLEEP = 0.4  # long enough that serial root starts would show


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
    tree.simple("all", "true", type="oneshot", enabled=False,
                extra="[dependencies]\nwants = [" + ", ".join(f'"{n}"' for n in names) + "]\n")


@settings(
    max_examples=10,
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
    max_examples=8,
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
