"""The message schema: the one place that says which messages exist.

Every message is an envelope ``{"id", "kind", "type", "body"}`` (responses also
``"re"``) carried in one frame (see :mod:`dynamod.ipc.framing`). Message types
are data, in :data:`SCHEMA`: type name -> kind -> {field: (spec, required)}.
A spec is a Python type, a tuple of alternatives, or one of the small
combinators :class:`ListOf`, :class:`TupleOf` and :class:`OneOf`.

Validation is strict about what it knows and lenient about what it does not:
unknown body fields and unknown envelope keys are ignored (a newer peer may
send them), a missing required field or a field of the wrong type is a
:class:`SchemaError` naming the field. An optional field that is ``None`` counts
as absent. docs/protocol.md is the prose version of this module.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

PROTOCOL_VERSION = 1

KINDS = ("request", "response", "event")


class SchemaError(ValueError):
    """A payload is not a valid message.

    ``request_id`` is the id of the offending request when the envelope was
    good enough to answer (kind "request" with an integer id), so a server can
    reply ``Error bad-request`` instead of dropping the connection; it is None
    when the envelope itself is broken.
    """

    def __init__(self, message: str, *, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


# --- field specs -------------------------------------------------------------


class ListOf:
    """A list whose every item matches ``item``."""

    __slots__ = ("item",)

    def __init__(self, item: object) -> None:
        self.item = item

    def check(self, value: object) -> str | None:
        if not isinstance(value, list):
            return f"must be a list, got {_tname(value)}"
        for i, item in enumerate(value):
            problem = _check(self.item, item)
            if problem:
                return f"item {i} {problem}"
        return None

    def describe(self) -> str:
        return f"list of {_describe(self.item)}"


class TupleOf:
    """A fixed-length list (MessagePack has no tuples) such as ``[pid, status]``."""

    __slots__ = ("items",)

    def __init__(self, *items: object) -> None:
        self.items = items

    def check(self, value: object) -> str | None:
        if not isinstance(value, list) or len(value) != len(self.items):
            return f"must be {self.describe()}, got {_tname(value)}"
        for i, (spec, item) in enumerate(zip(self.items, value, strict=True)):
            problem = _check(spec, item)
            if problem:
                return f"element {i} {problem}"
        return None

    def describe(self) -> str:
        return "[" + ", ".join(_describe(s) for s in self.items) + "]"


class OneOf:
    """One of a fixed set of strings."""

    __slots__ = ("values",)

    def __init__(self, *values: str) -> None:
        self.values = values

    def check(self, value: object) -> str | None:
        if value in self.values and isinstance(value, str):
            return None
        return f"must be one of {', '.join(map(repr, self.values))}, got {value!r}"

    def describe(self) -> str:
        return " | ".join(map(repr, self.values))


_NONE = type(None)


def _tname(value: object) -> str:
    return "nil" if value is None else type(value).__name__


def _describe(spec: object) -> str:
    if isinstance(spec, tuple):
        return " | ".join(_describe(s) for s in spec)
    if spec is _NONE:
        return "None"
    if isinstance(spec, type):
        return {dict: "map", list: "list"}.get(spec, spec.__name__)
    return spec.describe()  # type: ignore[attr-defined]


def _check(spec: object, value: object) -> str | None:
    """Return None if ``value`` matches ``spec``, else what is wrong."""
    if isinstance(spec, tuple):
        problems = [_check(s, value) for s in spec]
        if None in problems:
            return None
        return f"must be {_describe(spec)}, got {_tname(value)}"
    if isinstance(spec, type):
        # bool is an int subclass in Python but a distinct MessagePack type.
        if isinstance(value, bool) and spec is not bool:
            ok = False
        elif spec is float:
            ok = isinstance(value, (int, float))
        else:
            ok = isinstance(value, spec)
        if ok and spec is dict:
            for key in value:  # type: ignore[attr-defined]
                if not isinstance(key, str):
                    return f"must be a map with string keys, got key {key!r}"
        return None if ok else f"must be {_describe(spec)}, got {_tname(value)}"
    return spec.check(value)  # type: ignore[attr-defined]


# --- the schema --------------------------------------------------------------

SHUTDOWN_KINDS = OneOf("poweroff", "reboot", "halt")
STR_LIST = ListOf(str)

ERROR_CODES = frozenset(
    {
        "bad-request",
        "unknown-service",
        "failed",
        "permission-denied",
        "unsupported-version",
        "internal",
    }
)

_NAME = {"name": (str, True)}
# A job request: ``mode`` is what happens to a conflicting job already
# pending on the service (``replace`` cancels it, ``fail`` refuses the new
# one); ``no_block`` answers as soon as the job is queued.
_JOB = {"name": (str, True), "mode": (OneOf("replace", "fail"), False), "no_block": (bool, False)}

# type name -> kind -> {field: (spec, required)}
SCHEMA: dict[str, dict[str, dict[str, tuple[object, bool]]]] = {
    # init <-> svmgr, over the socketpair; all fire-and-forget events.
    "Heartbeat": {"event": {"seq": (int, True)}},
    "HeartbeatAck": {"event": {"seq": (int, True)}},
    "RequestShutdown": {"event": {"kind": (SHUTDOWN_KINDS, True)}},
    "ShutdownSignal": {"event": {"signal": (int, True)}},
    "LogToKmsg": {"event": {"level": (int, True), "message": (str, True)}},
    "Orphans": {"event": {"exits": (ListOf(TupleOf(int, int)), True)}},
    "Emergency": {"event": {"reason": (str, True)}},
    # Control socket.
    "Hello": {
        "request": {"version": (int, True), "client": (str, True)},
        "response": {"version": (int, True), "server": (str, True)},
    },
    "StartService": {"request": _JOB},
    "StopService": {"request": _JOB},
    "RestartService": {"request": _JOB},
    "TryRestartService": {"request": _JOB},
    "ReloadOrRestartService": {"request": _JOB},
    "ListJobs": {"request": {}},
    "CancelJob": {"request": {"id": (int, True)}},
    "ServiceStatus": {"request": _NAME},
    # Paged: a page holds what fits in one frame; ``next`` is the offset of
    # the following page and is absent on the last one.
    "ListServices": {"request": {"offset": (int, False)}},
    "TreeStatus": {"request": {}},
    "Reload": {"request": {}},
    "Shutdown": {"request": {"kind": (SHUTDOWN_KINDS, True)}},
    "GetServiceByPid": {"request": {"pid": (int, True)}},
    "GetLogs": {"request": {"name": (str, True), "lines": (int, False)}},
    # ``jobs``: also JobNew/JobRemoved events, not only ServiceStateChanged.
    "Subscribe": {"request": {"jobs": (bool, False)}},
    # The systemctl verbs (dynamod/svmgr/unitverbs.py); enable/disable/mask/
    # unmask and SetServiceOverride answer UnitFileChange.
    "EnableService": {"request": _NAME},
    "DisableService": {"request": _NAME},
    "MaskService": {"request": _NAME},
    "UnmaskService": {"request": _NAME},
    "ResetFailed": {"request": {"name": (str, False)}},
    "KillService": {
        "request": {
            "name": (str, True),
            "signal": ((int, str), False),
            "whom": (OneOf("all", "main", "control"), False),
        }
    },
    "GetServiceFiles": {"request": _NAME},
    "SetServiceOverride": {"request": {"name": (str, True), "text": (str, True)}},
    # Paged as ListServices (``next``).
    "GetBootTimes": {"request": {"offset": (int, False)}},
    "Ack": {"response": {"message": (str, False)}},
    # ``code`` is checked as a string, not against ERROR_CODES, so that a
    # client keeps working when a newer server adds a code.
    "Error": {
        "response": {
            "code": (str, True),
            "message": (str, True),
            "details": (STR_LIST, False),
        }
    },
    # ``job`` (job requests): the job's report, see JobRemoved.
    "ServiceInfo": {"response": {"service": (dict, True), "job": (dict, False)}},
    "JobList": {"response": {"jobs": (ListOf(dict), True)}},
    "ServiceList": {
        "response": {
            "services": (ListOf(dict), True),
            "total": (int, False),
            "next": (int, False),
        }
    },
    "Tree": {"response": {"root": (dict, True)}},
    "ReloadResult": {
        "response": {
            "added": (STR_LIST, True),
            "removed": (STR_LIST, True),
            "changed": (STR_LIST, True),
            "warnings": (STR_LIST, True),
        }
    },
    "ServiceByPid": {"response": {"name": ((str, _NONE), True)}},
    "UnitFileChange": {
        "response": {
            "name": (str, True),
            "path": (str, True),
            "changed": (bool, True),
            "enabled": (bool, True),
            "masked": (bool, True),
            "enablement": (str, True),
            "message": (str, False),
        }
    },
    # ``files``: maps {path, kind, text, truncated?, error?}; kind is
    # definition, override or state.
    "ServiceFiles": {"response": {"name": (str, True), "files": (ListOf(dict), True)}},
    "BootTimes": {
        "response": {
            "manager_start": (float, True),
            "now": (float, True),
            "init_start": ((float, _NONE), False),
            "initramfs_end": ((float, _NONE), False),
            "services": (ListOf(dict), True),
            "total": (int, False),
            "next": (int, False),
        }
    },
    "Logs": {"response": {"name": (str, True), "lines": (ListOf(TupleOf(float, str)), True)}},
    # A job was queued / ended (to subscribers). ``result`` is one of done,
    # failed, canceled, dependency, timeout, skipped; ``effects`` lists
    # the other services the job started, stopped or blocked, each with the
    # state it reached while the job ran.
    "JobNew": {"event": {"id": (int, True), "unit": (str, True), "type": (str, True)}},
    "JobRemoved": {
        "event": {
            "id": (int, True),
            "unit": (str, True),
            "type": (str, True),
            "result": (str, True),
            "reason": (str, False),
            "effects": (ListOf(dict), False),
        }
    },
    # dynamod-logd's query socket (logd.sock): records of the named
    # services (all when absent), newest ``lines`` or those after the
    # sequence number ``after``; see docs/logd.md.
    "QueryLogs": {
        "request": {
            "names": (STR_LIST, False),
            "lines": (int, False),
            "before": (int, False),
            "after": (int, False),
            "priority": (int, False),
            "since": (float, False),
            "until": (float, False),
            "grep": (str, False),
        }
    },
    "LogRecords": {
        "response": {
            "records": (ListOf(dict), True),
            "last": (int, True),
            "unstored": (int, True),
        }
    },
    # svmgr <-> logd over logd-streams.sock (SOCK_SEQPACKET, root only);
    # StreamAttach and Streams carry the pipes' reading ends (SCM_RIGHTS).
    "StreamAttach": {
        "event": {"id": (str, True), "service": (str, True), "pid": ((int, _NONE), False),
                  "stream": (OneOf("stdout", "stderr"), True)}
    },
    "StreamClosed": {"event": {"id": (str, True)}},
    "TakeStreams": {"event": {}},
    "Streams": {"event": {"streams": (ListOf(dict), True), "last": (bool, True)}},
    "LogRecord": {
        "event": {"service": (str, True), "priority": (int, True), "message": ((str, bytes), True),
                  "pid": ((int, _NONE), False), "unit": (str, False), "time": (float, False),
                  "stream": (str, False), "source": (str, False), "n": (int, False)}
    },
    # logd -> svmgr: the LogRecords of ``source`` up to ``n`` are stored.
    "Stored": {"event": {"source": (str, True), "n": (int, True)}},
    "ServiceStateChanged": {
        "event": {
            "name": (str, True),
            "old": (str, True),
            "new": (str, True),
            "reason": (str, True),
            "time": (float, True),
            "service": (dict, False),
        }
    },
}

# Requests any local user may send; everything else needs root. The service
# manager's handler enforces this with the peer's SO_PEERCRED uid.
READ_ONLY_REQUESTS = frozenset(
    {
        "Hello",
        "ServiceStatus",
        "ListServices",
        "TreeStatus",
        "GetServiceByPid",
        "GetLogs",
        "QueryLogs",
        "Subscribe",
        "ListJobs",
        "GetServiceFiles",
        "GetBootTimes",
    }
)


def message_types(kind: str) -> list[str]:
    """The type names defined for ``kind``, in schema order."""
    return [name for name, kinds in SCHEMA.items() if kind in kinds]


def validate_body(kind: str, type_: str, body: object) -> None:
    """Raise SchemaError unless ``body`` is a valid body for ``type_`` of ``kind``."""
    kinds = SCHEMA.get(type_)
    if kinds is None or kind not in kinds:
        raise SchemaError(f"unknown {kind} type {type_!r}")
    if not isinstance(body, dict):
        raise SchemaError(f"{type_} {kind}: body must be a map, got {_tname(body)}")
    for key in body:
        if not isinstance(key, str):
            raise SchemaError(f"{type_} {kind}: body keys must be strings, got {key!r}")
    for name, (spec, required) in kinds[kind].items():
        value = body.get(name)
        if value is None and name not in body:
            if required:
                raise SchemaError(f"{type_} {kind}: missing required field {name!r}")
            continue
        if value is None and not required:
            continue
        problem = _check(spec, value)
        if problem:
            raise SchemaError(f"{type_} {kind}: field {name!r} {problem}")


# --- messages ----------------------------------------------------------------

_ids = itertools.count(1)


def next_id() -> int:
    """A process-wide fresh message id (ids only need to be unique per
    connection and direction; a global counter is the simplest way)."""
    return next(_ids)


@dataclass(frozen=True, slots=True)
class Message:
    """One protocol message. ``re`` is set on responses only: the id of the
    request answered."""

    id: int
    kind: str
    type: str
    body: dict = field(default_factory=dict)
    re: int | None = None

    def validate(self) -> None:
        """Raise SchemaError unless this message is valid."""
        if not _is_int(self.id):
            raise SchemaError(f"message id must be an integer, got {_tname(self.id)}")
        if self.kind not in KINDS:
            raise SchemaError(f"unknown message kind {self.kind!r}")
        if self.kind == "response":
            if not _is_int(self.re):
                raise SchemaError(f"{self.type} response: 're' must be an integer")
        elif self.re is not None:
            raise SchemaError(f"{self.type} {self.kind}: only responses carry 're'")
        validate_body(self.kind, self.type, self.body)

    def to_payload(self) -> dict:
        """The envelope map to put in a frame. Validates first (SchemaError),
        so a bad message fails at its sender, not at every receiver."""
        self.validate()
        payload = {"id": self.id, "kind": self.kind, "type": self.type, "body": self.body}
        if self.kind == "response":
            payload["re"] = self.re
        return payload

    @classmethod
    def from_payload(cls, payload: object) -> Message:
        """Validate a decoded payload and build the message (SchemaError)."""
        if not isinstance(payload, dict):
            raise SchemaError(f"message must be a map, got {_tname(payload)}")
        for key in ("id", "kind", "type"):
            if key not in payload:
                raise SchemaError(f"message has no {key!r}")
        id_, kind, type_ = payload["id"], payload["kind"], payload["type"]
        if not _is_int(id_):
            raise SchemaError(f"message id must be an integer, got {_tname(id_)}")
        if kind not in KINDS or not isinstance(kind, str):
            raise SchemaError(f"unknown message kind {kind!r}")
        if not isinstance(type_, str):
            raise SchemaError(f"message type must be a string, got {_tname(type_)}")
        # From here on the sender of a request can be told what is wrong.
        rid = id_ if kind == "request" else None
        re = None
        if kind == "response":
            re = payload.get("re")
            if not _is_int(re):
                raise SchemaError(f"{type_} response: 're' must be an integer, got {_tname(re)}")
        body = payload.get("body", _MISSING)
        if body is _MISSING:
            raise SchemaError(f"{type_} {kind}: message has no 'body'", request_id=rid)
        try:
            validate_body(kind, type_, body)
        except SchemaError as exc:
            exc.request_id = rid
            raise
        return cls(id=id_, kind=kind, type=type_, body=body, re=re)  # type: ignore[arg-type]


_MISSING = object()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- constructors ------------------------------------------------------------


def request(type: str, body: dict | None = None, id: int | None = None) -> Message:
    """A request message; ``id`` defaults to a fresh one."""
    return Message(next_id() if id is None else id, "request", type, body or {})


def response(to: Message | int, type: str, body: dict | None = None) -> Message:
    """A response answering ``to`` (a request message or its id)."""
    re = to if isinstance(to, int) else to.id
    return Message(next_id(), "response", type, body or {}, re=re)


def error(to: Message | int, code: str, message: str, details: list[str] | None = None) -> Message:
    """An Error response. ``code`` must be one of ERROR_CODES (ValueError
    otherwise: a typo here would reach users as an unknown code)."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = list(details)
    return response(to, "Error", body)


def event(type: str, body: dict | None = None) -> Message:
    """An event (fire-and-forget) message."""
    return Message(next_id(), "event", type, body or {})
