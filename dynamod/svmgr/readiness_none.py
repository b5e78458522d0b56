"""The built-in plugin that provides the readiness type ``none``: ready as
soon as the process has been spawned.

It is an ordinary plugin of the ``dynamod`` hook project, registered by every
:class:`dynamod.plugins.PluginHost` before the entry points (also under
``--no-plugins``), so the host offers ``none`` through the same hook as any
third-party type instead of special-casing it in the config loader.
"""

from __future__ import annotations

from typing import Any

import dynamod
from dynamod.api import ReadinessType, SpawnSpec


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


NONE_TYPE = ReadinessType(
    name="none",
    create=NoneDetector,
    description="ready as soon as the process has been spawned",
)


@dynamod.hookimpl
def dynamod_readiness_types() -> list[ReadinessType]:
    return [NONE_TYPE]
