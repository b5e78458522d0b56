"""The dependency graph and the supervisor tree, indexed for the engine.

Built once per configuration (boot, reload), never walked recursively.

* ``deps[s]``: the services ``s`` starts after when both are starting
  (requires, wants, after, and ``before`` reversed); ``rdeps`` the reverse.
* ``requires[s]`` / ``req_by[s]``: hard dependencies and their reverse.
* ``pulls[s]``: what activating ``s`` activates too (requires and wants).
* ``topo``: position in a dependency order (ties by name).
* ``children[sup]``: a supervisor's direct children in start order, as
  ``("service" | "supervisor", name)``; ``subtree[sup]``: every service and
  supervisor below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dynamod.config.graph import order_edges, topological_order
from dynamod.config.model import ROOT_SUPERVISOR, ServiceConfig, SupervisorConfig


class Index:
    def __init__(
        self,
        services: Mapping[str, ServiceConfig],
        supervisors: Mapping[str, SupervisorConfig],
        known: Iterable[str] = (),
    ) -> None:
        """``services`` are the loaded ones; ``known`` adds names that exist
        as units without a usable configuration (refused files): edges to
        them are kept so that what requires them can be blocked."""
        names = set(services) | set(known)
        self.deps: dict[str, set[str]] = {n: set() for n in names}
        for n, ds in order_edges(dict(services)).items():
            self.deps.setdefault(n, set()).update(d for d in ds if d in names)
        # Edges to units without a usable config (the graph of the loaded
        # ones does not know them): kept, so that they block or order.
        for n, c in services.items():
            dep = c.dependencies
            self.deps[n].update(d for d in (*dep.requires, *dep.wants, *dep.after) if d in names)
        self.rdeps: dict[str, set[str]] = {n: set() for n in names}
        for n, ds in self.deps.items():
            for d in ds:
                self.rdeps[d].add(n)
        self.requires: dict[str, set[str]] = {n: set() for n in names}
        self.pulls: dict[str, set[str]] = {n: set() for n in names}
        for n, c in services.items():
            dep = c.dependencies
            self.requires[n] = {d for d in dep.requires if d in names}
            self.pulls[n] = self.requires[n] | {d for d in dep.wants if d in names}
        self.req_by: dict[str, set[str]] = {n: set() for n in names}
        for n, ds in self.requires.items():
            for d in ds:
                self.req_by[d].add(n)
        order = topological_order(dict(services))
        self.topo: dict[str, int] = {n: i for i, n in enumerate(order)}
        for n in sorted(names - set(self.topo)):
            self.topo[n] = len(self.topo)
        self._tree(services, supervisors)

    def _tree(self, services: Mapping[str, ServiceConfig], supervisors: Mapping[str, SupervisorConfig]) -> None:
        sups = set(supervisors) | {ROOT_SUPERVISOR}
        direct_services: dict[str, list[str]] = {s: [] for s in sups}
        direct_sups: dict[str, list[str]] = {s: [] for s in sups}
        for n, c in services.items():
            direct_services.setdefault(c.supervisor, []).append(n)
        for n, sc in supervisors.items():
            if sc.parent and n != ROOT_SUPERVISOR:
                direct_sups.setdefault(sc.parent, []).append(n)
        # Subtrees bottom-up without recursion: a post-order over the tree.
        self.subtree_services: dict[str, set[str]] = {}
        self.subtree_sups: dict[str, set[str]] = {}
        order: list[str] = []
        seen: set[str] = set()
        stack = [ROOT_SUPERVISOR, *sorted(sups)]
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            order.append(s)
            stack.extend(direct_sups.get(s, ()))
        for s in reversed(order):
            svcs = set(direct_services.get(s, ()))
            subs = {s}
            for c in direct_sups.get(s, ()):
                svcs |= self.subtree_services.get(c, set())
                subs |= self.subtree_sups.get(c, set())
            self.subtree_services[s] = svcs
            self.subtree_sups[s] = subs
        self.children: dict[str, list[tuple[str, str]]] = {}
        for s in order:
            kids: list[tuple[float, str, str]] = [
                (self.topo[n], "service", n) for n in direct_services.get(s, ())
            ]
            for c in direct_sups.get(s, ()):
                pos = min((self.topo[m] for m in self.subtree_services.get(c, ())), default=float("inf"))
                kids.append((pos, "supervisor", c))
            kids.sort(key=lambda k: (k[0], k[2]))
            self.children[s] = [(k, n) for _, k, n in kids]

    def subtree(self, sup: str) -> tuple[set[str], set[str]]:
        return set(self.subtree_services.get(sup, ())), set(self.subtree_sups.get(sup, {sup}))
