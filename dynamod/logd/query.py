"""Answers to ``QueryLogs`` on logd's query socket (docs/protocol.md)."""

from __future__ import annotations

import re
from typing import Any

import msgpack

from dynamod.ipc.schema import Message, error, response
from dynamod.ipc.server import Connection
from dynamod.logd.record import Record
from dynamod.logd.store import Store

REPLY_BYTES = 56 * 1024  # room for the envelope under the 64 KiB frame limit
DEFAULT_LINES = 10


class Query:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle(self, conn: Connection, msg: Message) -> Message | None:
        if msg.kind != "request":
            return None
        if msg.type != "QueryLogs":
            return error(msg, "bad-request", f"request {msg.type} is not supported by dynamod-logd")
        b = msg.body
        try:
            match = _matcher(b)
        except re.error as exc:
            return error(msg, "bad-request", f"QueryLogs: grep pattern {b['grep']!r}: {exc}")
        last = self.store.next_seq - 1
        if b.get("after") is not None:
            records, last = self._after(b["after"], match)
        else:
            records = self._tail(b.get("lines", DEFAULT_LINES), match, b.get("before"))
        return response(msg, "LogRecords", {"records": records, "last": last,
                                            "unstored": self.store.unstored})

    def _tail(self, lines: int, match: Any, before: int | None) -> list[dict]:
        out: list[dict] = []
        size = 0
        if lines <= 0:
            return out
        for rec in self.store.backward():
            if (before is not None and rec.seq >= before) or not match(rec):
                continue
            m = rec.to_map()
            size += len(msgpack.packb(m)) + 2
            if size > REPLY_BYTES and out:
                break
            out.append(m)
            if len(out) >= lines:
                break
        out.reverse()
        return out

    def _after(self, after: int, match: Any) -> tuple[list[dict], int]:
        """Oldest first from ``after`` on, as many as fit in a reply, and
        the sequence number the client asks from next (``last``)."""
        out: list[dict] = []
        size = 0
        upto = self.store.next_seq - 1
        for rec in self.store.forward(after):
            if not match(rec):
                continue
            m = rec.to_map()
            size += len(msgpack.packb(m)) + 2
            if size > REPLY_BYTES and out:
                upto = out[-1]["seq"]
                break
            out.append(m)
        return out, upto


def _matcher(b: dict) -> Any:
    names = set(b.get("names") or ())
    prio = b.get("priority")
    since = b.get("since")
    until = b.get("until")
    pattern = re.compile(b["grep"].encode("utf-8", "surrogateescape")) if b.get("grep") else None

    def match(rec: Record) -> bool:
        if names and rec.service not in names and rec.unit() not in names:
            return False
        if prio is not None and rec.priority > prio:
            return False
        if since is not None and rec.realtime < since * 1e6:
            return False
        if until is not None and rec.realtime > until * 1e6:
            return False
        return pattern is None or pattern.search(rec.message) is not None

    return match
