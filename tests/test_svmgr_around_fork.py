"""``SpawnSpec.around_fork``: a plugin's context managers wrap the fork of a
service (a real svmgr loading a plugin through an entry point). The probe is
the umask, which a child inherits from its parent at fork like the cgroup."""

from __future__ import annotations

import os
from pathlib import Path

from dynamod.testing import ConfigTree, Managers, install_plugin

PLUGIN = """
    import os

    import dynamod


    class Umask:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            if self.name == "refused":
                raise RuntimeError("no room for refused today")
            self.old = os.umask(0o077)

        def __exit__(self, *exc):
            os.umask(self.old)
            if self.name == "messy":
                raise ValueError("could not tidy up")


    @dynamod.hookimpl
    def dynamod_spawn_prepare(service, spec):
        if service.name != "plain":
            spec.around_fork.append(Umask(service.name))
"""


def install(root: Path) -> dict[str, str]:
    install_plugin(root, "umask-plugin", "umask_plugin", PLUGIN, entry="umask")
    return dict(os.environ, PYTHONPATH=str(root),
                DYNAMOD_DISABLE_PLUGINS="dynamod-readiness,dynamod-isolation,dynamod-bootmedia")


def test_child_inherits_what_the_context_set_manager_does_not(
        tree: ConfigTree, svmgr: Managers, tmp_path: Path) -> None:
    env = install(tmp_path / "site")
    for name in ("wrapped", "plain", "messy"):
        tree.simple(name, "umask; exec sleep 1000")
    tree.simple("refused", "exec sleep 1000", extra="[restart]\npolicy = \"temporary\"\n")
    mgr = svmgr(env=env)
    for name in ("wrapped", "plain", "messy"):
        mgr.wait_state(name, "running")
    assert mgr.wait_for(lambda: "0077" in mgr.logs("wrapped")), mgr.logs("wrapped")
    # the manager's own umask was restored: the next fork without the
    # context gets the usual one
    assert mgr.wait_for(lambda: "0022" in mgr.logs("plain")), mgr.logs("plain")
    # a context that fails on the way out: the process runs and is kept
    assert mgr.wait_for(lambda: "0077" in mgr.logs("messy"))
    assert "messy: after the fork: ValueError: could not tidy up" in mgr.log()
    # a context that fails on the way in: no process, a clear reason
    info = mgr.wait_state("refused", "failed")
    assert "no room for refused today" in info["reason"]
    assert info["pid"] is None
