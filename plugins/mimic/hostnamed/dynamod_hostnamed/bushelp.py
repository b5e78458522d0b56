"""Glue between the file modules and the D-Bus layer: setters as methods."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dynamod_mimic_common import CallContext, DBusError

from dynamod_hostnamed.errors import BusError

log = logging.getLogger("dynamod-hostnamed")


def setter(action: str) -> Callable[[Callable[..., Awaitable[Any] | Any]], Callable[..., Awaitable[Any]]]:
    """A method handler that only root may call (AccessDenied naming
    ``action`` otherwise; the trailing ``interactive`` argument is accepted
    and, without polkit, has nothing to ask), whose BusErrors become the
    error reply."""

    def wrap(fn: Callable[..., Awaitable[Any] | Any]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def method(obj: Any, ctx: CallContext, *args: Any) -> Any:
            await ctx.require_root(action)
            return await call(fn, obj, ctx, *args)

        return method

    return wrap


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` (plain or async) with BusError turned into DBusError."""
    try:
        result = fn(*args)
        if hasattr(result, "__await__"):
            result = await result
        return result
    except BusError as exc:
        log.info("refused: %s: %s", exc.name, exc.text)
        raise DBusError(exc.name, exc.text) from None
