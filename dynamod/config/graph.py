"""Dependency-graph utilities shared by the config validator and the service
manager.

A graph is a mapping ``node -> set of nodes it points to``. For the service
ordering graph an edge ``a -> b`` means "a starts after b". Every algorithm
here is iterative: configurations can have thousands of services and Python's
recursion limit is far below that, and the service manager must not die of a
RecursionError on a deep chain.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping

from dynamod.config.model import ServiceConfig

Graph = Mapping[str, Iterable[str]]

# Beyond this many cycles in one strongly connected component the rest is
# summarised: the first ones are what a human fixes first anyway.
MAX_CYCLES_PER_COMPONENT = 10


def order_edges(services: Mapping[str, ServiceConfig]) -> dict[str, set[str]]:
    """Name → the set of services it must start after.

    Combines requires, wants and after of each service with ``before``
    reversed (``s.before = [t]`` puts ``s`` into ``t``'s set). Names that are
    not in ``services`` are left out, so the result is a closed graph."""
    edges: dict[str, set[str]] = {name: set() for name in services}
    for name, svc in services.items():
        edges[name].update(d for d in svc.order_deps() if d in services)
        for later in svc.dependencies.before:
            if later in services:
                edges[later].add(name)
    return edges


def reverse_edges(edges: Graph) -> dict[str, set[str]]:
    """The transposed graph: for the ordering graph, name → the services
    that start after it (its dependents)."""
    rev: dict[str, set[str]] = {name: set() for name in edges}
    for name, targets in edges.items():
        for t in targets:
            rev.setdefault(t, set()).add(name)
    return rev


def topological_order(services: Mapping[str, ServiceConfig]) -> list[str]:
    """Every service name, each after all the services it starts after;
    ties are broken by name, so the order is deterministic.

    Cycles do not raise (a running service manager must still be able to
    order a configuration it was handed): when only cyclic nodes remain, the
    smallest remaining name is emitted as if its dependencies were met. Use
    :func:`find_cycles` to detect them."""
    return _kahn(order_edges(services))


def _kahn(edges: Mapping[str, set[str]]) -> list[str]:
    pending = {name: len(deps) for name, deps in edges.items()}
    dependents = reverse_edges(edges)
    ready = [name for name, n in pending.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(pending):
        if not ready:
            # Only cycles are left: break one deterministically.
            heapq.heappush(ready, min(n for n in pending if n not in done))
        name = heapq.heappop(ready)
        if name in done:
            continue
        done.add(name)
        order.append(name)
        for dep in dependents.get(name, ()):
            if dep in done:
                continue
            pending[dep] -= 1
            if pending[dep] == 0:
                heapq.heappush(ready, dep)
    return order


def strongly_connected_components(edges: Graph) -> list[list[str]]:
    """Tarjan's algorithm without recursion. Each component is sorted; the
    components come in reverse topological order (a component before the
    ones that point to it). Targets that are not keys count as nodes with no
    outgoing edges."""
    succ = {name: sorted(targets) for name, targets in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for root in sorted(succ):
        if root in index:
            continue
        visit(root)
        work = [(root, iter(succ[root]))]
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    visit(nxt)
                    work.append((nxt, iter(succ.get(nxt, ()))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                # All successors done: close the node.
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    comp: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.append(member)
                        if member == node:
                            break
                    components.append(sorted(comp))
    return components


def find_cycles(edges: Graph) -> list[list[str]]:
    """Distinct cycles as closed paths (``["a", "b", "c", "a"]``: a points to
    b, b to c, c to a), each starting at its smallest name, deterministic.

    For each strongly connected component, the shortest cycle through its
    smallest node not yet on a reported cycle is reported, until every node
    of the component is on a reported cycle (or
    :data:`MAX_CYCLES_PER_COMPONENT` is reached). This names every service
    involved without enumerating the possibly exponential set of all
    elementary cycles."""
    succ = {name: set(targets) for name, targets in edges.items()}
    cycles: list[list[str]] = []
    components = strongly_connected_components(succ)
    for comp in sorted(components):
        members = set(comp)
        if len(comp) == 1 and comp[0] not in succ.get(comp[0], ()):
            continue
        covered: set[str] = set()
        found = 0
        for start in comp:
            if start in covered:
                continue
            if found == MAX_CYCLES_PER_COMPONENT:
                break
            path = _shortest_cycle(start, succ, members)
            covered.update(path)
            cycles.append(_rotate(path))
            found += 1
    return cycles


def cycle_members(edges: Graph) -> set[str]:
    """Every node that lies on some cycle."""
    out: set[str] = set()
    for comp in strongly_connected_components(edges):
        if len(comp) > 1 or comp[0] in set(edges.get(comp[0], ())):
            out.update(comp)
    return out


def _shortest_cycle(start: str, succ: Mapping[str, set[str]], members: set[str]) -> list[str]:
    """BFS inside one component from ``start`` back to ``start``."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(succ.get(node, ())):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                path.reverse()
                return path
            if nxt in members and nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{start!r} is not on a cycle")  # pragma: no cover


def _rotate(path: list[str]) -> list[str]:
    """Start the open path at its smallest node and close it."""
    i = path.index(min(path))
    ring = path[i:] + path[:i]
    return [*ring, ring[0]]
