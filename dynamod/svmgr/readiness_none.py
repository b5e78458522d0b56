"""The built-in readiness type ``none``: ready once the process is spawned."""

from __future__ import annotations

from typing import Any

from dynamod.api import SpawnSpec


class NoneDetector:
    # The executor reports readiness at once instead of running wait().
    immediate = True

    def __init__(self, service: Any) -> None:
        self.service = service

    def prepare(self, spec: SpawnSpec) -> None:
        pass

    async def wait(self) -> None:
        return None

    def close(self) -> None:
        pass
