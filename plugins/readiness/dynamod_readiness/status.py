"""Extra ``dynamodctl status`` fields from live detectors.

The host asks plugins for status per service (``dynamod_service_status``),
not per detector, so detectors that have something to show register here
for as long as they are open. Weak keys: a forgotten service takes its
entry with it even if a detector was never closed.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

StatusSource = Callable[[], dict[str, Any]]

_sources: weakref.WeakKeyDictionary[Any, StatusSource] = weakref.WeakKeyDictionary()


def register(ctx: Any, source: StatusSource) -> None:
    _sources[ctx] = source


def unregister(ctx: Any, source: StatusSource) -> None:
    # Only our own entry: the next start's detector may have replaced it.
    if _sources.get(ctx) == source:
        del _sources[ctx]


def extra(ctx: Any) -> dict[str, Any] | None:
    source = _sources.get(ctx)
    return source() if source is not None else None
