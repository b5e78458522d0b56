"""The message schema: validation, helpers, and property tests over every
message type (bodies generated from the schema itself)."""

from __future__ import annotations

import itertools
import pathlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamod.ipc.framing import FrameDecoder, encode_frame
from dynamod.ipc.schema import (
    ERROR_CODES,
    KINDS,
    PROTOCOL_VERSION,
    READ_ONLY_REQUESTS,
    SCHEMA,
    ListOf,
    Message,
    OneOf,
    SchemaError,
    TupleOf,
    error,
    event,
    message_types,
    request,
    response,
    validate_body,
)

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
scalars = st.none() | st.booleans() | INT64 | st.floats(allow_nan=False) | st.text(max_size=12)
any_value = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


def strategy_for(spec: object) -> st.SearchStrategy:
    if isinstance(spec, tuple):
        return st.one_of(*(strategy_for(s) for s in spec))
    if isinstance(spec, ListOf):
        return st.lists(strategy_for(spec.item), max_size=4)
    if isinstance(spec, TupleOf):
        return st.tuples(*(strategy_for(s) for s in spec.items)).map(list)
    if isinstance(spec, OneOf):
        return st.sampled_from(spec.values)
    simple = {
        int: INT64,
        float: st.floats(allow_nan=False),
        str: st.text(max_size=16),
        bytes: st.binary(max_size=16),
        bool: st.booleans(),
        type(None): st.none(),
        dict: st.dictionaries(st.text(max_size=8), any_value, max_size=4),
        list: st.lists(any_value, max_size=4),
    }
    return simple[spec]  # type: ignore[index]


@st.composite
def bodies(draw: st.DrawFn, type_: str, kind: str) -> dict:
    fields = SCHEMA[type_][kind]
    body = {}
    for name, (spec, required) in fields.items():
        if required or draw(st.booleans()):
            body[name] = draw(strategy_for(spec))
    # Unknown fields from a newer peer must survive and be ignored.
    extra = draw(st.dictionaries(st.text(max_size=8), any_value, max_size=2))
    for key, value in extra.items():
        body.setdefault(key, value)
    return body


TYPE_KINDS = [(t, k) for t, kinds in SCHEMA.items() for k in kinds]


@st.composite
def messages(draw: st.DrawFn) -> Message:
    type_, kind = draw(st.sampled_from(TYPE_KINDS))
    body = draw(bodies(type_, kind))
    re_ = draw(INT64) if kind == "response" else None
    return Message(draw(INT64), kind, type_, body, re=re_)


def decode_all(frames: list[bytes]) -> list[Message]:
    decoder = FrameDecoder()
    out = []
    for chunk in frames:
        out.extend(Message.from_payload(p) for p in decoder.feed(chunk))
    return out


@given(messages())
def test_roundtrip_through_frames(msg: Message) -> None:
    assert decode_all([encode_frame(msg.to_payload())]) == [msg]


@given(st.lists(messages(), max_size=5), st.lists(st.integers(min_value=0), max_size=10))
def test_stream_split_anywhere(batch: list[Message], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(m.to_payload()) for m in batch)
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert decode_all(chunks) == batch


# Values of many shapes: for every field at least one must be rejected.
WRONG_VALUES = ["x", 7, 2.5, True, [], [["x"]], {}, {"k": 1}, "bogus-kind"]


@pytest.mark.parametrize(("type_", "kind"), TYPE_KINDS)
def test_missing_and_mistyped_fields_are_named(type_: str, kind: str) -> None:
    fields = SCHEMA[type_][kind]
    valid = {name: _example(spec) for name, (spec, _) in fields.items()}
    validate_body(kind, type_, valid)
    for name, (_spec, required) in fields.items():
        body = {k: v for k, v in valid.items() if k != name}
        if required:
            with pytest.raises(SchemaError, match=f"missing required field '{name}'"):
                validate_body(kind, type_, body)
        else:
            validate_body(kind, type_, body)
        rejected = 0
        for wrong in WRONG_VALUES:
            try:
                validate_body(kind, type_, {**valid, name: wrong})
            except SchemaError as exc:
                assert f"field '{name}'" in str(exc)
                assert type_ in str(exc)
                rejected += 1
        assert rejected, f"{type_}.{name} accepts anything"


def _example(spec: object) -> object:
    if isinstance(spec, tuple):
        return _example(spec[0])
    if isinstance(spec, ListOf):
        return [_example(spec.item)]
    if isinstance(spec, TupleOf):
        return [_example(s) for s in spec.items]
    if isinstance(spec, OneOf):
        return spec.values[0]
    return {int: 1, float: 1.5, str: "s", dict: {"a": 1}, list: [1], bool: True}[spec]  # type: ignore[index]


def test_bool_is_not_an_int_but_int_is_a_float() -> None:
    with pytest.raises(SchemaError, match="'seq' must be int, got bool"):
        validate_body("event", "Heartbeat", {"seq": True})
    body = {"name": "a", "old": "x", "new": "y", "reason": "r", "time": 5}
    validate_body("event", "ServiceStateChanged", body)


def test_optional_none_counts_as_absent_but_required_none_does_not() -> None:
    validate_body("request", "GetLogs", {"name": "a", "lines": None})
    validate_body("response", "ServiceByPid", {"name": None})
    with pytest.raises(SchemaError, match="'name' must be str, got nil"):
        validate_body("request", "GetLogs", {"name": None})


def test_nested_checks() -> None:
    with pytest.raises(SchemaError, match=r"'exits' item 0 must be \[int, int\]"):
        validate_body("event", "Orphans", {"exits": [[1, 2, 3]]})
    with pytest.raises(SchemaError, match="'exits' item 1 element 1 must be int"):
        validate_body("event", "Orphans", {"exits": [[1, 0], [2, "x"]]})
    with pytest.raises(SchemaError, match="'lines' item 0 element 1 must be str"):
        validate_body("response", "Logs", {"name": "a", "lines": [[1.0, 2]]})
    with pytest.raises(SchemaError, match="'kind' must be one of 'poweroff', 'reboot', 'halt'"):
        validate_body("request", "Shutdown", {"kind": "suspend"})
    with pytest.raises(SchemaError, match="string keys"):
        validate_body("response", "ServiceInfo", {"service": {1: "x"}})


def test_unknown_fields_and_envelope_keys_are_ignored() -> None:
    payload = {
        "id": 3,
        "kind": "request",
        "type": "StartService",
        "body": {"name": "sshd", "future-option": [1, 2]},
        "trace": "abc",
    }
    msg = Message.from_payload(payload)
    assert msg.body["name"] == "sshd"
    assert msg.re is None


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ([1], "must be a map"),
        ({"kind": "request", "type": "Reload", "body": {}}, "no 'id'"),
        ({"id": "1", "kind": "request", "type": "Reload", "body": {}}, "id must be an integer"),
        ({"id": True, "kind": "request", "type": "Reload", "body": {}}, "id must be an integer"),
        ({"id": 1, "kind": "command", "type": "Reload", "body": {}}, "unknown message kind"),
        ({"id": 1, "kind": "request", "type": 5, "body": {}}, "type must be a string"),
        ({"id": 1, "kind": "response", "type": "Ack", "body": {}}, "'re' must be an integer"),
        ({"id": 1, "kind": "event", "type": "Nope", "body": {}}, "unknown event type 'Nope'"),
    ],
)
def test_unanswerable_envelopes(payload: object, match: str) -> None:
    with pytest.raises(SchemaError, match=match) as info:
        Message.from_payload(payload)
    assert info.value.request_id is None


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"id": 9, "kind": "request", "type": "Frobnicate", "body": {}}, "unknown request type"),
        ({"id": 9, "kind": "request", "type": "Reload"}, "no 'body'"),
        ({"id": 9, "kind": "request", "type": "Reload", "body": []}, "body must be a map"),
        ({"id": 9, "kind": "request", "type": "StartService", "body": {}}, "'name'"),
        # A request type used as a response and vice versa.
        ({"id": 9, "kind": "request", "type": "Ack", "body": {}}, "unknown request type 'Ack'"),
    ],
)
def test_answerable_requests_carry_their_id(payload: dict, match: str) -> None:
    with pytest.raises(SchemaError, match=match) as info:
        Message.from_payload(payload)
    assert info.value.request_id == 9


def test_to_payload_validates() -> None:
    with pytest.raises(SchemaError, match="'re'"):
        Message(1, "response", "Ack", {}).to_payload()
    with pytest.raises(SchemaError, match="only responses"):
        Message(1, "request", "Reload", {}, re=4).to_payload()
    with pytest.raises(SchemaError, match="missing required field 'pid'"):
        request("GetServiceByPid", {}).to_payload()
    payload = response(request("Reload", id=12), "Ack").to_payload()
    assert payload["re"] == 12 and payload["kind"] == "response"
    assert "re" not in event("Heartbeat", {"seq": 1}).to_payload()


def test_helpers() -> None:
    req = request("StartService", {"name": "a"}, 41)
    assert (req.id, req.kind, req.type, req.body, req.re) == (
        41,
        "request",
        "StartService",
        {"name": "a"},
        None,
    )
    auto1, auto2 = request("Reload"), request("Reload")
    assert auto1.id != auto2.id and auto1.body == {}
    resp = response(req, "Ack", {"message": "started"})
    assert resp.re == 41 and resp.kind == "response"
    err = error(req, "unknown-service", "no service 'a'", ["did you mean 'b'?"])
    assert err.type == "Error" and err.re == 41
    assert err.body == {
        "code": "unknown-service",
        "message": "no service 'a'",
        "details": ["did you mean 'b'?"],
    }
    assert "details" not in error(7, "failed", "x").body
    assert error(7, "failed", "x").re == 7
    with pytest.raises(ValueError, match="unknown error code"):
        error(req, "oops", "x")
    ev = event(
        "ServiceStateChanged", {"name": "a", "old": "x", "new": "y", "reason": "", "time": 1.0}
    )
    assert ev.kind == "event" and ev.re is None
    ev.to_payload()


def test_error_code_from_newer_server_is_accepted() -> None:
    validate_body("response", "Error", {"code": "rate-limited", "message": "slow down"})


def test_catalogue() -> None:
    assert PROTOCOL_VERSION == 1
    assert set(KINDS) == {"request", "response", "event"}
    requests = set(message_types("request"))
    assert requests == {
        "Hello", "StartService", "StopService", "RestartService", "ServiceStatus",
        "ListServices", "TreeStatus", "Reload", "Shutdown", "GetServiceByPid",
        "GetLogs", "Subscribe", "TryRestartService", "ReloadOrRestartService", "ListJobs",
        "CancelJob", "EnableService", "DisableService", "MaskService", "UnmaskService",
        "ResetFailed", "KillService", "GetServiceFiles", "SetServiceOverride", "GetBootTimes",
        "QueryLogs",
    }  # fmt: skip
    assert set(message_types("response")) == {
        "Hello", "Ack", "Error", "ServiceInfo", "ServiceList", "Tree", "ReloadResult",
        "ServiceByPid", "Logs", "JobList", "UnitFileChange", "ServiceFiles", "BootTimes",
        "LogRecords",
    }  # fmt: skip
    assert set(message_types("event")) == {
        "Heartbeat", "HeartbeatAck", "RequestShutdown", "ShutdownSignal", "LogToKmsg",
        "Orphans", "Emergency", "ServiceStateChanged", "JobNew", "JobRemoved",
        "StreamAttach", "StreamClosed", "TakeStreams", "Streams", "LogRecord", "Stored",
    }  # fmt: skip
    assert requests >= READ_ONLY_REQUESTS
    assert {"StartService", "StopService", "RestartService", "Reload", "Shutdown",
            "CancelJob", "TryRestartService", "EnableService", "DisableService", "MaskService",
            "UnmaskService", "ResetFailed", "KillService", "SetServiceOverride"}.isdisjoint(
        READ_ONLY_REQUESTS
    )
    assert len(ERROR_CODES) == 6


def test_docs_cover_every_message_and_field() -> None:
    doc = DOC.read_text()
    for type_, kinds in SCHEMA.items():
        for kind, fields in kinds.items():
            heading = re.search(rf"^#### {type_} \({kind}\)$", doc, re.M)
            assert heading, f"docs/protocol.md lacks '#### {type_} ({kind})'"
            section = doc[heading.end() :].split("\n#### ", 1)[0]
            for name in fields:
                assert f"`{name}`" in section, f"{type_} ({kind}): field {name} undocumented"
    for code in ERROR_CODES:
        assert f"`{code}`" in doc
    for name in READ_ONLY_REQUESTS:
        assert name in doc
