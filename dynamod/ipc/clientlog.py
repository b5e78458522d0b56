"""Rate-limited logging of misbehaving clients, per uid.

A client that sends garbage as fast as it can must not turn the manager's
log into its own megaphone (nor cost the manager its time writing it): the
first problem of a uid in an interval is logged at once, with its detail;
the rest of that interval are counted and summed up in one line per uid when
the interval ends.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

# At most this many uids are told apart per interval; the others share a line.
MAX_UIDS = 64


class ClientLog:
    def __init__(self, log: Callable[[str], None], interval: float = 10.0) -> None:
        self.log = log
        self.interval = interval
        self._seen: dict[int, Counter[str]] = {}  # uid -> suppressed problems by kind
        self._timer: asyncio.TimerHandle | None = None

    def note(self, uid: int, kind: str, detail: str) -> None:
        """One problem of a client of ``uid``: ``kind`` is the short name it
        is counted under, ``detail`` the full line logged when it is the
        first of its uid in this interval."""
        key = uid if uid in self._seen or len(self._seen) < MAX_UIDS else -2
        counts = self._seen.get(key)
        if counts is None:
            self._seen[key] = Counter()
            self.log(detail)
            self._arm()
            return
        counts[kind] += 1

    def _arm(self) -> None:
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Log the summaries of the interval that ended and start afresh."""
        self._timer = None
        seen, self._seen = self._seen, {}
        for uid, counts in seen.items():
            total = sum(counts.values())
            if not total:
                continue
            who = "other uids" if uid == -2 else f"uid {uid}"
            kinds = ", ".join(f"{kind} x{n}" for kind, n in counts.most_common())
            self.log(f"{who}: {total} more client problems in the last {self.interval:g}s "
                     f"(not logged one by one): {kinds}")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.flush()
