"""Shared fixtures: a config tree and a real dynamod-svmgr per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamod.testing import ConfigTree, Managers


@pytest.fixture
def tree(tmp_path: Path) -> ConfigTree:
    return ConfigTree(tmp_path / "etc")


@pytest.fixture
def svmgr(tmp_path: Path, tree: ConfigTree) -> Iterator[Managers]:
    """``svmgr(**kw)`` starts a manager on ``tree``; all are stopped after.
    ``runtime_dir=`` overrides the default runtime directory."""
    managers = Managers(tree, tmp_path)
    yield managers
    managers.stop_all()
