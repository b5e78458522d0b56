"""Asyncio control-socket client, for daemons (the systemd-mimic services).

A background reader task routes responses to the request awaiting them (by
``re``) and queues events for :meth:`AsyncClient.events`, so requests may be
issued concurrently from several tasks on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

from dynamod.ipc.client import (
    ConnectError,
    ProtocolError,
    RemoteError,
    default_socket_path,
    parse_server_message,
    raise_for_error,
    socket_candidates,
)
from dynamod.ipc.framing import FrameDecoder, FrameError, encode_frame
from dynamod.ipc.schema import PROTOCOL_VERSION, Message

__all__ = ["AsyncClient", "ConnectError", "ProtocolError", "RemoteError"]

_RECV_SIZE = 256 * 1024
_CLOSED = object()  # end-of-events marker in the queue


class AsyncClient:
    """A connection to a dynamod control socket; create with :meth:`connect`.

    Events are queued without bound once the server sends them (that is,
    after a ``Subscribe`` request): iterate :meth:`events` if you subscribe.
    """

    def __init__(
        self,
        path: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float | None,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Message]] = {}
        self._events: asyncio.Queue[object] = asyncio.Queue()
        self._lost: Exception | None = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(cls, path: str | None = None, timeout: float | None = 30.0) -> AsyncClient:
        """Connect to ``path`` (default: :func:`default_socket_path`).
        ``timeout`` bounds connecting and each request. Raises ConnectError."""
        path = path or default_socket_path()
        *twin, path = socket_candidates(path)
        if twin:  # the trusted twin first (see socket_candidates)
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(twin[0], limit=_RECV_SIZE), timeout
                )
                return cls(twin[0], reader, writer, timeout)
            except (OSError, TimeoutError):
                pass
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path, limit=_RECV_SIZE), timeout
            )
        except TimeoutError as exc:
            raise ConnectError(path, f"timed out after {timeout}s") from exc
        except OSError as exc:
            raise ConnectError(path, exc.strerror or str(exc), exc.errno) from exc
        return cls(path, reader, writer, timeout)

    async def request(
        self, type: str, body: dict | None = None, *, timeout: float | None = -1
    ) -> Message:
        """Send a request and await its response. ``timeout`` defaults to the
        client's. Raises RemoteError (Error response), TimeoutError,
        ProtocolError (connection lost), SchemaError (invalid request)."""
        if self._lost is not None:
            raise ProtocolError(str(self._lost))
        msg = Message(next(self._ids), "request", type, body or {})
        frame = encode_frame(msg.to_payload())
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[msg.id] = future
        try:
            self._writer.write(frame)
            await self._writer.drain()
            wait = self.timeout if timeout == -1 else timeout
            try:
                reply = await asyncio.wait_for(future, wait)
            except TimeoutError:
                raise TimeoutError(f"no {type} response from {self.path} within {wait}s") from None
        except (ConnectionError, BrokenPipeError) as exc:
            raise ProtocolError(f"connection to {self.path} lost: {exc}") from exc
        finally:
            self._waiting.pop(msg.id, None)
        return raise_for_error(reply)

    async def hello(self, client: str) -> int:
        """Exchange Hello; return the server's protocol version."""
        reply = await self.request("Hello", {"version": PROTOCOL_VERSION, "client": client})
        return reply.body["version"]

    async def events(self) -> AsyncIterator[Message]:
        """Yield events as they arrive; ends when the connection closes."""
        while True:
            item = await self._events.get()
            if item is _CLOSED:
                self._events.put_nowait(_CLOSED)  # wake other iterators too
                return
            yield item  # type: ignore[misc]

    @property
    def closed(self) -> bool:
        """True once the connection is closed or lost."""
        return self._lost is not None

    async def close(self) -> None:
        """Close the connection (idempotent); pending requests fail."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        lost: Exception = ProtocolError(f"{self.path}: server closed the connection")
        try:
            while True:
                data = await self._reader.read(_RECV_SIZE)
                if not data:
                    if decoder.buffered:
                        lost = ProtocolError(f"{self.path}: server closed the connection mid-frame")
                    break
                for payload in decoder.feed(data):
                    msg = parse_server_message(payload)
                    if msg is None:
                        continue
                    if msg.kind == "event":
                        self._events.put_nowait(msg)
                    elif msg.kind == "response":
                        future = self._waiting.get(msg.re)  # type: ignore[arg-type]
                        if future is not None and not future.done():
                            future.set_result(msg)
        except asyncio.CancelledError:
            lost = ProtocolError("client closed")
            raise
        except FrameError as exc:
            lost = ProtocolError(f"{self.path}: bad frame from server: {exc}")
        except (ProtocolError, OSError) as exc:
            lost = exc if isinstance(exc, ProtocolError) else ProtocolError(str(exc))
        finally:
            self._lost = lost
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(lost)
            self._events.put_nowait(_CLOSED)
            if not self._writer.is_closing():
                self._writer.close()
