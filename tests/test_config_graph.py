"""Graph utilities: ordering edges, topological order, cycles (iteratively)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from dynamod.config.graph import (
    MAX_CYCLES_PER_COMPONENT,
    cycle_members,
    find_cycles,
    order_edges,
    reverse_edges,
    strongly_connected_components,
    topological_order,
)
from dynamod.config.model import DependencyConfig, ServiceConfig


def svc(name: str, **deps: list[str]) -> ServiceConfig:
    return ServiceConfig(
        name=name, exec=("/bin/true",), dependencies=DependencyConfig(**{k: tuple(v) for k, v in deps.items()})
    )


def services(*items: ServiceConfig) -> dict[str, ServiceConfig]:
    return {s.name: s for s in items}


def test_order_edges_combine_kinds_and_reverse_before() -> None:
    g = services(
        svc("web", requires=["db"], wants=["cache"], after=["net"], before=["proxy"]),
        svc("db"), svc("cache"), svc("net"), svc("proxy"),
    )
    edges = order_edges(g)
    assert edges["web"] == {"db", "cache", "net"}
    assert edges["proxy"] == {"web"}
    assert edges["db"] == set()


def test_order_edges_drop_unknown_names() -> None:
    edges = order_edges(services(svc("a", requires=["ghost"], before=["phantom"])))
    assert edges == {"a": set()}


def test_reverse_edges() -> None:
    assert reverse_edges({"a": {"b"}, "b": set()}) == {"a": set(), "b": {"a"}}


def test_topological_order_ties_by_name() -> None:
    g = services(svc("z"), svc("y"), svc("b", after=["z"]), svc("a", after=["z", "y"]))
    assert topological_order(g) == ["y", "z", "a", "b"]


def test_topological_order_uses_before() -> None:
    g = services(svc("a"), svc("b", before=["a"]))
    assert topological_order(g) == ["b", "a"]


def test_topological_order_does_not_raise_on_cycles() -> None:
    g = services(svc("a", after=["b"]), svc("b", after=["a"]), svc("c", after=["a"]), svc("d"))
    order = topological_order(g)
    assert sorted(order) == ["a", "b", "c", "d"]
    assert order.index("c") > order.index("a")


def test_long_chain_is_not_recursive() -> None:
    n = 20000  # far beyond the recursion limit
    names = [f"s{i:05d}" for i in range(n)]
    g = {names[0]: svc(names[0])}
    for prev, name in itertools.pairwise(names):
        g[name] = svc(name, requires=[prev])
    assert topological_order(g) == names
    assert find_cycles(order_edges(g)) == []
    ring = {name: {names[(i + 1) % n]} for i, name in enumerate(names)}
    (cycle,) = find_cycles(ring)
    assert len(cycle) == n + 1 and cycle[0] == cycle[-1] == names[0]


def test_find_cycles_path_and_rotation() -> None:
    edges = {"c": {"a"}, "a": {"b"}, "b": {"c"}, "d": {"a"}}
    assert find_cycles(edges) == [["a", "b", "c", "a"]]


def test_find_cycles_self_loop() -> None:
    assert find_cycles({"a": {"a"}, "b": set()}) == [["a", "a"]]


def test_find_cycles_each_once_and_deterministic() -> None:
    # Two disjoint cycles and a figure eight sharing "m".
    edges = {
        "x": {"y"}, "y": {"x"},
        "m": {"p", "q"}, "p": {"m"}, "q": {"m"},
        "a": {"b"}, "b": {"c"}, "c": {"a"},
    }
    cycles = find_cycles(edges)
    assert cycles == [["a", "b", "c", "a"], ["m", "p", "m"], ["m", "q", "m"], ["x", "y", "x"]]
    shuffled = list(edges.items())
    random.Random(1).shuffle(shuffled)
    assert find_cycles(dict(shuffled)) == cycles


def test_find_cycles_caps_per_component() -> None:
    # A hub with many spokes: one big component, many distinct cycles.
    edges: dict[str, set[str]] = {"hub": set()}
    for i in range(50):
        edges["hub"].add(f"s{i:02d}")
        edges[f"s{i:02d}"] = {"hub"}
    cycles = find_cycles(edges)
    assert len(cycles) == MAX_CYCLES_PER_COMPONENT
    assert cycle_members(edges) == set(edges)


def test_scc_reverse_topological() -> None:
    comps = strongly_connected_components({"a": {"b"}, "b": {"c"}, "c": {"b"}})
    assert comps == [["b", "c"], ["a"]]


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.sets(st.sampled_from("abcdefgh")), max_size=8))
def test_cycles_are_real_paths(edges: dict[str, set[str]]) -> None:
    edges = {k: {t for t in v if t in edges} for k, v in edges.items()}
    members = cycle_members(edges)
    seen: set[str] = set()
    for cycle in find_cycles(edges):
        assert cycle[0] == cycle[-1] == min(cycle)
        for a, b in itertools.pairwise(cycle):
            assert b in edges[a]
        seen.update(cycle)
    # Every node on some cycle is named by a reported cycle.
    assert seen == members


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.sets(st.sampled_from("abcdefgh")), max_size=8))
def test_topological_order_respects_acyclic_edges(deps: dict[str, set[str]]) -> None:
    # Keep only edges to earlier names: guaranteed acyclic.
    g = {n: svc(n, after=sorted(d for d in ds if d < n)) for n, ds in deps.items()}
    order = topological_order(g)
    assert sorted(order) == sorted(g)
    pos = {n: i for i, n in enumerate(order)}
    for n, s in g.items():
        for d in s.dependencies.after:
            if d in g:
                assert pos[d] < pos[n]
