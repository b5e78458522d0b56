"""Fixtures for the dynamod-readiness tests: a config tree and real
dynamod-svmgr processes (which load this plugin through its entry point,
as an installed system would)."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dynamod.testing import manager_fixtures

tree, svmgr = manager_fixtures()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path lives under a
    0700 directory): for runtime directories of services run as nobody."""
    path = Path(tempfile.mkdtemp(prefix="dynamod-rt-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def free_port() -> Callable[[str], int]:
    def pick(host: str = "127.0.0.1") -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as s:
            s.bind((host, 0))
            return s.getsockname()[1]

    return pick
