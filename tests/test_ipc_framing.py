"""Framing: b"DM" + u32 LE length + MessagePack map."""

from __future__ import annotations

import itertools
import pathlib
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamod.ipc.framing import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    FrameDecoder,
    FrameError,
    decode_frame,
    encode_frame,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
payloads = st.dictionaries(st.text(max_size=10), values, max_size=6)


def frame_of(raw: bytes) -> bytes:
    return b"DM" + struct.pack("<I", len(raw)) + raw


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def test_frame_layout() -> None:
    frame = encode_frame({"a": 1})
    assert frame == b"DM\x04\x00\x00\x00" + b"\x81\xa1a\x01"
    assert HEADER_SIZE == 6


@given(payloads)
def test_roundtrip(payload: dict) -> None:
    assert FrameDecoder().feed(encode_frame(payload)) == [payload]


@given(st.lists(payloads, max_size=6), st.lists(st.integers(min_value=0), max_size=12))
def test_any_chunking_yields_same_payloads(batch: list[dict], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in batch)
    decoder = FrameDecoder()
    out: list[dict] = []
    for chunk in split(stream, cuts):
        out.extend(decoder.feed(chunk))
    assert out == batch
    assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    stream = encode_frame({"x": "y" * 300}) + encode_frame({"n": 1})
    decoder = FrameDecoder()
    out = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert out == [{"x": "y" * 300}, {"n": 1}]


def test_encode_limit() -> None:
    # 1-byte map header, 2-byte key "k", 3-byte str16 header, then the string.
    overhead = 1 + 2 + 3
    exact = {"k": "x" * (MAX_PAYLOAD - overhead)}
    assert len(encode_frame(exact)) == HEADER_SIZE + MAX_PAYLOAD
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame({"k": "x" * (MAX_PAYLOAD - overhead + 1)})


@pytest.mark.parametrize("bad", [[1, 2], "text", 5, {1: "int key"}])
def test_encode_rejects_non_maps(bad: object) -> None:
    with pytest.raises(FrameError):
        encode_frame(bad)  # type: ignore[arg-type]


def test_encode_rejects_unencodable_value() -> None:
    with pytest.raises(FrameError, match="cannot encode"):
        encode_frame({"x": object()})
    with pytest.raises(FrameError, match="cannot encode"):
        encode_frame({"x": 2**64})


@pytest.mark.parametrize("first", [b"G", b"\x00", b"D\x00", b"MD"])
def test_bad_magic_detected_from_first_bytes(first: bytes) -> None:
    with pytest.raises(FrameError, match="bad magic"):
        FrameDecoder().feed(first)


def test_bad_magic_after_good_frame() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameError, match="bad magic"):
        decoder.feed(encode_frame({"a": 1}) + b"XX\x00\x00\x00\x00")


def test_oversize_length_rejected_on_header_alone() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameError, match="exceeds"):
        decoder.feed(b"DM" + struct.pack("<I", MAX_PAYLOAD + 1))
    with pytest.raises(FrameError, match="exceeds"):
        FrameDecoder().feed(b"DM\xff\xff\xff\xff")


def test_max_length_header_is_accepted_and_buffered() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"DM" + struct.pack("<I", MAX_PAYLOAD)) == []
    assert decoder.buffered == HEADER_SIZE


@pytest.mark.parametrize(
    "raw",
    [
        msgpack.packb([1, 2, 3]),  # not a map
        msgpack.packb("hello"),
        msgpack.packb({1: "x"}),  # non-string key
        b"",  # empty payload
        b"\xc1",  # reserved, never valid
        b"\x82\xa1a",  # map of 2 cut short
        msgpack.packb({"a": 1}) + b"\x00",  # trailing bytes inside the frame
        msgpack.packb({"a": msgpack.ExtType(5, b"xx")}),  # extension types
        msgpack.packb({"a": msgpack.Timestamp(1, 0)}),  # ... msgpack's own timestamp too
        msgpack.packb({"a": [{"b": msgpack.Timestamp(2**40, 5)}]}),  # nested, 96-bit form
        b"\x81\xa1a\xa2\xff\xfe",  # invalid UTF-8 string
    ],
)
def test_invalid_payloads(raw: bytes) -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(frame_of(raw))


def test_decoder_stays_failed() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameError):
        decoder.feed(b"nope")
    with pytest.raises(FrameError):
        decoder.feed(encode_frame({"a": 1}))


def test_truncated_frame_is_visible_as_buffered() -> None:
    decoder = FrameDecoder()
    frame = encode_frame({"a": "b" * 50})
    assert decoder.feed(frame[:20]) == []
    assert decoder.buffered == 20


def test_worked_example_in_docs_is_exact() -> None:
    from dynamod.ipc.schema import request

    frame = encode_frame(request("StartService", {"name": "sshd"}, id=1).to_payload())
    lines = []
    for i in range(0, len(frame), 16):
        chunk = frame[i : i + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk).ljust(48)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{i:04x}  {hexes}  {text}")
    doc = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    assert "\n".join(lines) in doc
    assert f"{len(frame)}-byte frame" in doc


def test_resync_decoder_skips_garbage_and_bad_frames() -> None:
    """PID 1's link decoder survives garbage, oversize headers and bad
    payloads, recording each problem and keeping the good frames."""
    from dynamod.ipc.framing import HEADER, MAGIC

    good1 = encode_frame({"type": "Heartbeat", "n": 1})
    good2 = encode_frame({"type": "Heartbeat", "n": 2})
    good3 = encode_frame({"type": "Heartbeat", "n": 3})
    bad_payload = HEADER.pack(MAGIC, 3) + b"\xc1\xc1\xc1"  # 0xc1 is never valid msgpack
    oversize = HEADER.pack(MAGIC, 10_000_000)
    stream = b"garbage!" + good1 + oversize + b"xx" + good2 + bad_payload + good3
    dec = FrameDecoder(resync=True)
    got = []
    for i in range(0, len(stream), 5):  # arbitrary chunking
        got += dec.feed(stream[i : i + 5])
    assert [p["n"] for p in got] == [1, 2, 3]
    assert len(dec.errors) >= 3
    assert dec.buffered == 0


def test_a_0xff_byte_alone_is_no_timestamp() -> None:
    payload = {"n": 255, "b": b"\xff\xff", "i": -1}
    assert FrameDecoder().feed(encode_frame(payload)) == [payload]


@settings(max_examples=40)
@given(st.lists(payloads, min_size=1, max_size=5), st.integers(min_value=0, max_value=3))
def test_feed_with_a_limit_keeps_the_rest_undecoded(batch: list[dict], limit: int) -> None:
    decoder = FrameDecoder()
    data = b"".join(encode_frame(p) for p in batch)
    got = decoder.feed(data, limit)
    assert got == batch[:limit]
    while len(got) < len(batch):
        more = decoder.feed(b"", 1)
        assert len(more) == 1
        got += more
    assert got == batch and decoder.buffered == 0


def test_decode_frame_wants_exactly_one_frame() -> None:
    frame = encode_frame({"a": 1})
    assert decode_frame(frame) == {"a": 1}
    for bad in (frame[:-1], frame + frame, frame[:4], b"XX" + frame[2:], frame_of(b"\xc1")):
        with pytest.raises(FrameError):
            decode_frame(bad)
