"""Paged answers: as many entries as fit one frame, and where to go on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgpack

# Leave room for the envelope under the 64 KiB frame limit.
PAGE_BYTES = 56 * 1024


def page(names: Sequence[str], offset: int, entry: Callable[[str], dict[str, Any]],
         limit: int = PAGE_BYTES) -> tuple[list[dict[str, Any]], int | None]:
    """The entries of ``names[offset:]`` that fit ``limit`` bytes (at least
    one), and the offset of the next page (None on the last)."""
    out: list[dict[str, Any]] = []
    size = 0
    i = max(0, offset)
    while i < len(names):
        item = entry(names[i])
        n = len(msgpack.packb(item))
        if out and size + n > limit:
            break
        out.append(item)
        size += n
        i += 1
    return out, (i if i < len(names) else None)
