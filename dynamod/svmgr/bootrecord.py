"""The GetBootTimes request: when each service became pending, was started
and became ready, for ``dynamodctl analyze``.

A mixin of :class:`dynamod.svmgr.control.Control`. Times are
CLOCK_MONOTONIC seconds (the engine's clock), the first of each since this
svmgr started; dynamod-init's own times come from the environment it
passes down (``DYNAMOD_BOOT_*``, set only on a real boot).
"""

from __future__ import annotations

import os
from typing import Any

from dynamod.ipc.schema import Message, response
from dynamod.ipc.server import Connection
from dynamod.svmgr.paging import page


def _env_time(name: str) -> float | None:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value >= 0 else None


class BootRecord:
    """``do_GetBootTimes``; the host class provides ``manager``."""

    manager: Any

    async def do_GetBootTimes(self, conn: Connection, msg: Message) -> Message:
        engine = self.manager.engine
        names = sorted(engine.services)

        def entry(name: str) -> dict[str, Any]:
            s = engine.services[name]
            d = s.cfg.dependencies
            return {
                "name": s.name, "state": s.state, "pending": s.boot[0], "started": s.boot[1],
                "ready": s.boot[2], "requires": list(d.requires), "wants": list(d.wants),
                # Every service it was ordered after: requires, wants, after
                # and the `before` of others.
                "after": sorted(engine.index.deps.get(s.name, ())),
            }

        services, nxt = page(names, msg.body.get("offset") or 0, entry)
        body: dict[str, Any] = {
            "manager_start": self.manager.started_at,
            "now": self.manager.loop.time(),
            "init_start": _env_time("DYNAMOD_BOOT_INIT_START"),
            "initramfs_end": _env_time("DYNAMOD_BOOT_SWITCHED"),
            "services": services,
            "total": len(names),
        }
        if nxt is not None:
            body["next"] = nxt
        return response(msg, "BootTimes", body)
