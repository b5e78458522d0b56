"""Fixtures for the bridge tests: see dynamod_sd1bridge.testing."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dynamod_mimic_common.testing import Namespace
from dynamod_sd1bridge.testing import Stack

from dynamod.testing import ConfigTree


@pytest.fixture
def work() -> Iterator[Path]:
    # World-traversable (pytest's tmp dirs are 0700): systemctl runs as
    # nobody in some tests and must reach the bus socket.
    path = Path(tempfile.mkdtemp(prefix="sd1-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ns() -> Iterator[Namespace]:
    n = Namespace()
    yield n
    n.close()


@pytest.fixture
def tree(work: Path) -> ConfigTree:
    return ConfigTree(work / "etc")


@pytest.fixture(params=["bus", "private"])
def via(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def stack(work: Path, ns: Namespace, tree: ConfigTree, via: str) -> Iterator[Stack]:
    s = Stack(work, ns, tree, via)
    yield s
    s.stop()


@pytest.fixture
def bus_stack(work: Path, ns: Namespace, tree: ConfigTree) -> Iterator[Stack]:
    s = Stack(work, ns, tree, "bus")
    yield s
    s.stop()


