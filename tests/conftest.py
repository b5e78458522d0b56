"""Shared fixtures: a config tree and a real dynamod-svmgr per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamod.testing import ConfigTree, Svmgr


@pytest.fixture
def tree(tmp_path: Path) -> ConfigTree:
    return ConfigTree(tmp_path / "etc")


@pytest.fixture
def svmgr(tmp_path: Path, tree: ConfigTree) -> Iterator[callable]:
    """``svmgr(**kw)`` starts a manager on ``tree``; all are stopped after."""
    started: list[Svmgr] = []

    def start(**kw: object) -> Svmgr:
        mgr = Svmgr(tree.root, tmp_path / f"run{len(started)}", **kw)
        started.append(mgr)
        return mgr

    yield start
    for mgr in started:
        try:
            mgr.stop()
        except Exception:
            pass
