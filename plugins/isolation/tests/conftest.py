"""Fixtures for the dynamod-isolation tests: a config tree, real
dynamod-svmgr processes (which load this plugin through its entry point, as
an installed system would), and a cgroup tree of the test's own under the
machine's cgroup2 mount, removed afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dynamod_isolation import cgroups

from dynamod.testing import ConfigTree, Svmgr

ROOT = os.geteuid() == 0
MOUNTS = cgroups.cgroup2_mounts()


@pytest.fixture
def tree(tmp_path: Path) -> ConfigTree:
    return ConfigTree(tmp_path / "etc")


def _kill_and_remove(path: str) -> None:
    """Kill whatever a failed test left in ``path`` (cgroup.kill reaches
    the sub-cgroups too) and remove the cgroups, deepest first."""
    tree = cgroups.Tree(os.path.dirname(path), path)
    if not tree.kill(path):
        return  # not there
    deadline = time.monotonic() + 10
    while not tree.remove(path) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def purge_cgroup() -> Callable[[str], None]:
    """Kill and remove a cgroup tree a test made outside ``cgroot``."""
    return _kill_and_remove


@pytest.fixture
def cgroot() -> Iterator[str]:
    """A cgroup tree for this test only (``DYNAMOD_CGROUP_ROOT``)."""
    if not ROOT or not MOUNTS:
        pytest.skip("needs root and a cgroup2 mount")
    mount = next((m for m in MOUNTS if m == "/sys/fs/cgroup"), MOUNTS[0])
    path = os.path.join(mount, f"dynamod-test-{uuid.uuid4().hex[:8]}")
    yield path
    _kill_and_remove(path)


@pytest.fixture
def svmgr(tmp_path: Path, tree: ConfigTree, cgroot: str) -> Iterator[Callable[..., Svmgr]]:
    """``svmgr(**kw)`` starts a manager on ``tree`` with its cgroups under
    ``cgroot``; all are stopped after the test."""
    started: list[Svmgr] = []

    def start(env: dict[str, str] | None = None, **kw: object) -> Svmgr:
        full = dict(os.environ)
        full["DYNAMOD_CGROUP_ROOT"] = cgroot
        full.update(env or {})
        mgr = Svmgr(tree.root, tmp_path / f"run{len(started)}", env=full, **kw)  # type: ignore[arg-type]
        started.append(mgr)
        return mgr

    yield start
    for mgr in started:
        try:
            mgr.stop()
        except Exception:
            if mgr.proc is not None and mgr.proc.poll() is None:
                mgr.proc.send_signal(signal.SIGKILL)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside /tmp (a private /tmp would hide it) that the test
    and its services share: services write what they see there."""
    path = Path(tempfile.mkdtemp(prefix="dynamod-iso-", dir="/var/tmp" if not ROOT else "/run"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
