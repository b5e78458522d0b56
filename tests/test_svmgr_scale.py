"""Deep and wide graphs on a real svmgr: chains of 600 and 5,000 services
(each ``requires`` the one before) and a 10-layer DAG of 2,000 services.
Start, stop of the root, restart of the root and shutdown each complete, in
dependency order (the engine has no recursion over the graph: a chain of
5,000 is as safe as a chain of 5)."""

from __future__ import annotations

import re

import pytest

from dynamod.testing import ConfigTree, wait_until

BARE = ["--no-plugins"]
SLEEP = ["/bin/sleep", "100000"]


def chain(tree: ConfigTree, n: int) -> list[str]:
    names = [f"c{i:05d}" for i in range(n)]
    for i, name in enumerate(names):
        deps = f'[dependencies]\nrequires = ["{names[i - 1]}"]\n' if i else ""
        tree.service(name, f'[service]\nname = "{name}"\nexec = {SLEEP!r}\n{deps}'.replace("'", '"'))
    return names


def dag(tree: ConfigTree, layers: int, width: int) -> list[list[str]]:
    grid = [[f"d{layer:02d}x{i:04d}" for i in range(width)] for layer in range(layers)]
    for layer, row in enumerate(grid):
        for i, name in enumerate(row):
            deps = ""
            if layer:
                below = grid[layer - 1]
                req = [below[(i + k) % width] for k in range(3)]
                deps = "[dependencies]\nrequires = [" + ", ".join(f'"{d}"' for d in req) + "]\n"
            tree.service(name, f'[service]\nname = "{name}"\nexec = {SLEEP!r}\n{deps}'.replace("'", '"'))
    return grid


def states(mgr) -> dict[str, str]:
    out: dict[str, str] = {}
    offset: int | None = 0
    while offset is not None:
        page = mgr.request("ListServices", {"offset": offset})
        out.update({s["name"]: s["state"] for s in page["services"]})
        offset = page.get("next")
    return out


def all_in(mgr, state: str, n: int, timeout: float) -> None:
    def check() -> bool:
        st = states(mgr)
        return len(st) == n and all(v == state for v in st.values())

    wait_until(check, timeout=timeout, what=f"all {n} services {state}",
               context=lambda: mgr.log()[-3000:])


def order_of(log: str, transition: str) -> dict[str, int]:
    """Position in the log of each service's last ``transition``."""
    pat = re.compile(r"dynamod-svmgr: (\S+): " + re.escape(transition) + r"\b")
    out: dict[str, int] = {}
    for i, line in enumerate(log.splitlines()):
        m = pat.search(line)
        if m:
            out[m.group(1)] = i
    return out


def assert_chain_order(log: str, names: list[str], transition: str, reverse: bool) -> None:
    pos = order_of(log, transition)
    missing = [n for n in names if n not in pos]
    assert not missing, f"{len(missing)} without {transition!r}, e.g. {missing[:3]}"
    seq = [pos[n] for n in names]
    if reverse:
        seq.reverse()
    assert seq == sorted(seq), f"{transition} out of dependency order"


@pytest.mark.parametrize("n", [600, 5000])
def test_a_long_chain_starts_stops_restarts_and_shuts_down_in_order(tree, svmgr, n):
    names = chain(tree, n)
    timeout = 30 + n / 50
    mgr = svmgr(args=BARE)
    all_in(mgr, "running", n, timeout)
    assert_chain_order(mgr.log(), names, "starting -> waiting-ready", reverse=False)
    # Stop of the root: everything after it stops first, last one first.
    job = mgr.request("StopService", {"name": names[0]}, timeout=timeout)["job"]
    # Every other link moved; the report names the first 200 (one frame).
    assert len(job["effects"]) == min(n - 1, 200)
    assert job.get("effects_omitted", 0) == max(n - 1 - 200, 0)
    st = states(mgr)
    assert st[names[0]] == "stopped"
    assert all(st[x] in ("stopped", "blocked") for x in names[1:])
    log = mgr.log()
    assert_chain_order(log, names, "stopping -> stopped", reverse=True)
    # Start of the tip pulls the whole chain up again.
    mgr.request("StartService", {"name": names[-1]}, timeout=timeout)
    all_in(mgr, "running", n, timeout)
    # Restart of the root: down in reverse, up in order, all running again.
    mark = len(mgr.log().splitlines())
    mgr.request("RestartService", {"name": names[0]}, timeout=timeout)
    all_in(mgr, "running", n, timeout)
    tail = "\n".join(mgr.log().splitlines()[mark:])
    # (the root itself goes stopping -> restarting)
    assert_chain_order(tail, names[1:], "stopping -> stopped", reverse=True)
    assert order_of(tail, "stopping -> restarting")[names[0]] > order_of(tail, "stopping -> stopped")[names[1]]
    assert_chain_order(tail, names, "starting -> waiting-ready", reverse=False)
    # Shutdown.
    mark = len(mgr.log().splitlines())
    mgr.stop(timeout=timeout)
    assert mgr.proc.returncode == 0
    tail = "\n".join(mgr.log().splitlines()[mark:])
    assert_chain_order(tail, names, "stopping -> stopped", reverse=True)
    assert "RecursionError" not in mgr.log() and "internal error" not in mgr.log()


def test_the_head_of_a_600_chain_failing_blocks_every_link(tree, svmgr):
    names = chain(tree, 600)
    tree.service(names[0], f'[service]\nname = "{names[0]}"\nexec = ["/bin/false"]\n'
                 '[restart]\npolicy = "temporary"\n')
    mgr = svmgr(args=BARE)

    def settled() -> dict[str, str] | None:
        st = states(mgr)
        # (A link may start while the head still counts as running, and
        # be stopping on its way to blocked: not settled either.)
        moving = {"pending", "starting", "stopping", "restarting"}
        return st if len(st) == 600 and not moving.intersection(st.values()) else None

    st = wait_until(settled, timeout=60, what="the chain to settle")
    assert st[names[0]] == "failed"
    assert all(st[x] == "blocked" for x in names[1:]), {v for v in st.values()}
    assert mgr.status(names[1])["reason"] == f"requires {names[0]}, which failed"
    assert mgr.status(names[-1])["reason"] == f"requires {names[-2]}, which is blocked"


def test_a_ten_layer_dag_of_2000(tree, svmgr):
    grid = dag(tree, 10, 200)
    n = 2000
    mgr = svmgr(args=BARE)
    all_in(mgr, "running", n, 90)
    log = mgr.log()
    up = order_of(log, "starting -> waiting-ready")
    for layer in range(1, 10):
        assert min(up[x] for x in grid[layer]) > 0
        # every service starts after the three it requires
        for i, x in enumerate(grid[layer]):
            for k in range(3):
                assert up[x] > up[grid[layer - 1][(i + k) % 200]]
    mgr.request("RestartService", {"name": grid[0][0]}, timeout=90)
    all_in(mgr, "running", n, 90)
    mgr.stop(timeout=90)
    assert mgr.proc.returncode == 0
    log = mgr.log()
    tail = log[log.rindex("shutdown (exit)"):]
    down = order_of(tail, "stopping -> stopped")
    assert len(down) == n
    for layer in range(1, 10):
        for i, x in enumerate(grid[layer]):
            for k in range(3):
                assert down[x] < down[grid[layer - 1][(i + k) % 200]]
