"""The floor: the least a manager can do. Started as its own process
(``python3 -I -S bench/floor.py SPEC.json``) so it pays an interpreter
start-up as the managers do, then fork-execs every service with
posix_spawn (vfork + exec: it returns once the child has exec'd) in the
spec's order, which is topological: with readiness "process started", a
service's requirements are up before it is spawned. On SIGTERM it stops the
services layer by layer in reverse dependency order (each layer in
parallel) and exits.

Standalone on purpose: standard library only, nothing imported from dynamod
or the suite.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def main() -> None:
    with open(sys.argv[1]) as f:
        services = json.load(f)["services"]
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    depth: dict[str, int] = {}
    pids: dict[str, int] = {}
    env = dict(os.environ)
    for s in services:
        depth[s["name"]] = 1 + max((depth[r] for r in s["requires"]), default=-1)
        pids[s["name"]] = os.posix_spawn(s["argv"][0], s["argv"], env, setsigmask=())
    signal.sigwait({signal.SIGTERM})
    for layer in range(max(depth.values(), default=-1), -1, -1):
        group = [pids[n] for n, d in depth.items() if d == layer]
        for pid in group:
            os.kill(pid, signal.SIGTERM)
        for pid in group:
            os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
