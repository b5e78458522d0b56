"""Fixtures for the object-layer tests: a private bus and the demo service
running on it as a real process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dynamod_mimic_common.testing import PrivateBus, open_system_bus, system_bus

__all__ = ["open_system_bus", "system_bus"]

DEMO = Path(__file__).with_name("demo_service.py")


class DemoProc:
    def __init__(self, bus: PrivateBus, peer: str | None) -> None:
        self.bus = bus
        self.peer = peer
        argv = [sys.executable, str(DEMO)] + (["--peer", peer] if peer else [])
        self.proc = subprocess.Popen(argv, env=bus.env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"demo service did not start: {self.proc.stderr.read()}")

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=15)
        return err


@pytest.fixture
def demo(open_system_bus: PrivateBus, tmp_path: Path) -> Iterator[DemoProc]:
    proc = DemoProc(open_system_bus, str(tmp_path / "peer.sock"))
    yield proc
    proc.stop()
