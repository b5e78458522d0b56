"""Length-prefixed MessagePack frames: ``b"DM" | u32 LE length | payload``.

PID 1 imports this module, so it depends on nothing but ``struct`` and
``msgpack``. It knows nothing about message semantics (see
:mod:`dynamod.ipc.schema`); it only guarantees that every decoded payload is a
map with string keys.
"""

from __future__ import annotations

import struct

import msgpack

MAGIC = b"DM"
HEADER = struct.Struct("<2sI")
HEADER_SIZE = HEADER.size  # 6
MAX_PAYLOAD = 64 * 1024


class FrameError(ValueError):
    """A frame could not be encoded or decoded; the connection it came from is
    unusable and must be closed."""


def encode_frame(payload: dict) -> bytes:
    """Encode one payload map as a complete frame.

    Raises FrameError if the payload is not a map with string keys, holds a
    value MessagePack cannot encode, or encodes to more than MAX_PAYLOAD bytes.
    """
    _check_map(payload)
    try:
        data = msgpack.packb(payload, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise FrameError(f"cannot encode payload: {exc}") from exc
    if len(data) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(data)} bytes exceeds the maximum of {MAX_PAYLOAD}")
    return HEADER.pack(MAGIC, len(data)) + data


def decode_payload(data: bytes) -> dict:
    """Decode one complete payload (no header). Raises FrameError."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except FrameError:
        raise
    except Exception as exc:
        # msgpack raises a zoo of types (ValueError, ExtraData, FormatError,
        # StackError, UnicodeDecodeError...): all mean "not a payload".
        raise FrameError(f"undecodable payload: {exc.__class__.__name__}: {exc}") from exc
    _check_map(obj)
    # msgpack decodes its timestamp extension (type -1) itself, without
    # asking ext_hook; its type byte is 0xff, so only a payload holding
    # one needs the walk.
    if b"\xff" in data:
        _reject_timestamps(obj)
    return obj


def decode_frame(data: bytes) -> dict:
    """Decode one message that must be exactly one frame (a SOCK_SEQPACKET
    datagram: the init <-> svmgr link). Raises FrameError."""
    if len(data) < HEADER_SIZE:
        raise FrameError(f"message of {len(data)} bytes is shorter than a frame header")
    magic, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}")
    if length > MAX_PAYLOAD:
        raise FrameError(f"frame length {length} exceeds the maximum of {MAX_PAYLOAD}")
    if length != len(data) - HEADER_SIZE:
        raise FrameError(f"frame length {length} but {len(data) - HEADER_SIZE} payload bytes in the message")
    return decode_payload(data[HEADER_SIZE:])


def _reject_timestamps(obj: object) -> None:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, msgpack.Timestamp):
            raise FrameError("MessagePack extension type -1 (timestamp) is not allowed")


def _reject_ext(code: int, data: bytes) -> object:
    raise FrameError(f"MessagePack extension type {code} is not allowed")


def _check_map(obj: object) -> None:
    if not isinstance(obj, dict):
        raise FrameError(f"payload must be a map, not {type(obj).__name__}")
    for key in obj:
        if not isinstance(key, str):
            raise FrameError(f"payload map keys must be strings, got {type(key).__name__}")


class FrameDecoder:
    """Incremental decoder for a byte stream of frames.

    Feed it whatever ``recv`` returned; it returns the payloads completed by
    that chunk. After a FrameError the stream is out of sync for good, so every
    later ``feed`` raises again, unless the decoder was made with
    ``resync=True``: then a bad frame is skipped (up to the next ``DM``),
    the error is appended to ``errors``, and decoding goes on. PID 1 uses that
    on its socketpair with svmgr, which it cannot simply close.
    """

    __slots__ = ("_buf", "_error", "errors", "resync")

    def __init__(self, resync: bool = False) -> None:
        self._buf = bytearray()
        self._error: FrameError | None = None
        self.resync = resync
        self.errors: list[FrameError] = []

    @property
    def buffered(self) -> int:
        """Bytes held back: an incomplete frame (non-zero at EOF means the
        peer sent a truncated frame), and frames a ``limit`` left undecoded."""
        return len(self._buf)

    def feed(self, data: bytes, limit: int | None = None) -> list[dict]:
        """Append ``data`` and return every payload it completes, in order;
        with ``limit``, at most that many, the rest staying buffered (undecoded)
        for a later ``feed(b"")``."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        out: list[dict] = []
        pos = 0
        while limit is None or len(out) < limit:
            try:
                pos, done = self._next(buf, pos, out)
            except FrameError as exc:
                if not self.resync:
                    self._error = exc
                    buf.clear()
                    raise
                self.errors.append(exc)
                skip_to = getattr(exc, "skip_to", None)
                if skip_to is not None:
                    pos = skip_to
                    continue
                nxt = buf.find(MAGIC, pos + 1)
                if nxt < 0:
                    # Keep a trailing "D": it may start the next magic.
                    pos = len(buf) - 1 if buf.endswith(MAGIC[:1]) else len(buf)
                    break
                pos = nxt
                continue
            if done:
                break
        del buf[:pos]
        return out

    @staticmethod
    def _next(buf: bytearray, pos: int, out: list[dict]) -> tuple[int, bool]:
        """Decode one frame at ``pos``; return the new position and whether
        more bytes are needed."""
        avail = len(buf) - pos
        if avail < HEADER_SIZE:
            # Check the magic we already have, so garbage (an HTTP request, a
            # stray text line) fails at once instead of waiting for more bytes
            # that may never come.
            if avail and not MAGIC.startswith(bytes(buf[pos : pos + min(avail, 2)])):
                raise FrameError(f"bad magic {bytes(buf[pos : pos + 2])!r}")
            return pos, True
        magic, length = HEADER.unpack_from(buf, pos)
        if magic != MAGIC:
            raise FrameError(f"bad magic {magic!r}")
        if length > MAX_PAYLOAD:
            raise FrameError(f"frame length {length} exceeds the maximum of {MAX_PAYLOAD}")
        end = pos + HEADER_SIZE + length
        if len(buf) < end:
            return pos, True
        try:
            out.append(decode_payload(bytes(buf[pos + HEADER_SIZE : end])))
        except FrameError as exc:
            # Well framed but a bad payload: a resyncing reader skips the
            # frame whole instead of hunting for magic inside it.
            exc.skip_to = end  # type: ignore[attr-defined]
            raise
        return end, False
