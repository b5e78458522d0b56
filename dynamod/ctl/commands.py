"""What each daemon-facing command does.

The command table (:mod:`dynamod.ctl.verbs`) parses the command line and
calls these functions; plugin commands reach the daemon through
:func:`connect` too. Every function writes its output to stdout, reports
failures as ``dynamodctl: ...`` lines on stderr, and returns the exit code.
Imports are kept to what the hot commands need (``json`` only with
``--json``).
"""

from __future__ import annotations

import contextlib
import sys
import time

from dynamod.ctl import render
from dynamod.ctl.exits import NOT_RUNNING, OK, UNKNOWN_SERVICE, CtlError
from dynamod.ctl.wire import Conn, socket_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import Any, TypeVar

    T = TypeVar("T")
    R = TypeVar("R")

# Requests sent ahead of the answers read. svmgr works on 64 requests of a
# connection at once and disconnects a client that leaves more than 1 MB of
# answers unread, so `is-active` of 5000 names must read while it sends.
IN_FLIGHT = 64
STATUS_IN_FLIGHT = 16  # names: two requests each, and log lines make big answers
LOG_POLL_INTERVAL = 0.5  # `logs --follow` polls: the log ring has no events
FOLLOW_WINDOW = 500  # lines asked for per poll; more than that in one interval is dropped


def out(text: str) -> None:
    sys.stdout.write(text)


def error(message: str, details: Sequence[str] = ()) -> None:
    """One ``dynamodctl: MESSAGE`` line on stderr (plus ``details`` lines
    for reload's config errors). stdout is flushed first so that a terminal
    shows both streams in the order they were written."""
    sys.stdout.flush()
    text = f"dynamodctl: {message}\n" + "".join(f"{d}\n" for d in details)
    sys.stderr.write(text)
    sys.stderr.flush()


def run(fn: Callable[..., int], *args: Any) -> int:
    """Call a command function; a CtlError it raises becomes its message
    on stderr and its exit code."""
    try:
        return fn(*args)
    except CtlError as exc:
        error(exc.message, exc.details)
        return exc.code


def ahead(
    items: Iterable[T], send: Callable[[T], R], limit: int = IN_FLIGHT
) -> Iterator[tuple[T, R]]:
    """``(item, send(item))`` in the order of ``items``, with at most
    ``limit`` items sent before the caller has read the answers of the one
    yielded (it reads them before asking for the next)."""
    pending: list[tuple[T, R]] = []  # short: a list, not collections' deque (2 ms to import)
    for item in items:
        pending.append((item, send(item)))
        if len(pending) >= limit:
            yield pending.pop(0)
    while pending:
        yield pending.pop(0)


def _style() -> render.Style:
    return render.Style.for_stream(sys.stdout)


def _json(obj: object) -> str:
    import json

    return json.dumps(obj) + "\n"


def connect(socket: str | None, timeout: float | None = 30.0) -> Conn:
    return Conn(socket_path(socket), timeout)


# --- read-only commands (the hot path) -------------------------------------------


def status(socket: str | None, names: Sequence[str], as_json: bool) -> int:
    """Exit 0 when every service is up (running, or exited for a oneshot), 3
    when one is not, 4 when one is unknown. ``--json`` prints one service map
    per line and exits 0 whenever it got them: it is a query, like
    ``systemctl show``, and the state is in the data."""
    code = OK
    style = None if as_json else _style()
    logd_conn = None
    if not as_json:
        from dynamod.ctl import logs as logd

        # The last lines come from dynamod-logd when it runs (svmgr stops
        # reading service output once logd has it).
        logd_conn = logd.connect(socket_path(socket))

    def send(name: str) -> tuple[int, int | None]:
        logs = (
            None
            if as_json or logd_conn is not None
            else conn.send("GetLogs", {"name": name, "lines": render.STATUS_LOG_LINES})
        )
        return conn.send("ServiceStatus", {"name": name}), logs

    with connect(socket) as conn, contextlib.ExitStack() as stack:
        if logd_conn is not None:
            stack.enter_context(logd_conn)
        # Pipelined: requests go out ahead of the answers being read.
        for i, (_, (sid, lid)) in enumerate(ahead(names, send, STATUS_IN_FLIGHT)):
            try:
                info = conn.recv(sid, "ServiceInfo").get("service") or {}
            except CtlError as exc:
                if lid is not None:
                    _ignore_error(conn, lid, "Logs")
                error(exc.message)
                code = max(code, exc.code)
                continue
            if style is None:
                out(_json(info))
                continue
            lines = _ignore_error(conn, lid, "Logs").get("lines") if lid is not None else None
            if logd_conn is not None:
                lines = logd.recent(logd_conn, info.get("name", ""), render.STATUS_LOG_LINES)
            if i:
                out("\n")
            out(render.service_status(info, lines, time.time(), style))
            if info.get("state") not in render.UP_STATES:
                code = max(code, NOT_RUNNING)
    return code


def is_active(socket: str | None, names: Sequence[str], quiet: bool) -> int:
    """Print each service's state; exit 0 if all are up, 3 if one is not, 4
    if one is unknown. For scripts: ``if dynamodctl is-active -q web``."""
    code = OK
    with connect(socket) as conn:
        for _, rid in ahead(names, lambda n: conn.send("ServiceStatus", {"name": n})):
            try:
                state = (conn.recv(rid, "ServiceInfo").get("service") or {}).get("state")
            except CtlError as exc:
                if exc.code != UNKNOWN_SERVICE or not quiet:
                    error(exc.message)
                code = max(code, exc.code)
                continue
            if not quiet:
                out(f"{state}\n")
            if state not in render.UP_STATES:
                code = max(code, NOT_RUNNING)
    return code


def fetch_services(conn: Conn) -> list[dict]:
    """Every service map; ListServices is paged (``next`` until absent)."""
    return fetch_pages(conn, "ListServices", "ServiceList")[1]


def fetch_pages(conn: Conn, request: str, expect: str) -> tuple[dict, list[dict]]:
    """The last page's body and every page's ``services`` (a paged request:
    ask again with ``offset`` = ``next`` until it is absent)."""
    services: list[dict] = []
    offset: int | None = 0
    body: dict = {}
    while offset is not None:
        body = conn.request(request, expect, {"offset": offset})
        services.extend(s for s in body.get("services") or [] if isinstance(s, dict))
        nxt = body.get("next")
        offset = nxt if isinstance(nxt, int) and nxt > offset else None
    return body, services


def list_services(socket: str | None, as_json: bool, failed: bool = False,
                  states: Sequence[str] = (), patterns: Sequence[str] = ()) -> int:
    """Every service, or those in one of ``states`` (``failed``: the
    failed ones) whose name matches one of the shell ``patterns``."""
    with connect(socket) as conn:
        services = fetch_services(conn)
    wanted = {s for arg in states for s in arg.split(",") if s} | ({"failed"} if failed else set())
    if wanted:
        services = [s for s in services if s.get("state") in wanted]
    if patterns:
        from fnmatch import fnmatchcase

        services = [s for s in services if any(fnmatchcase(str(s.get("name")), p) for p in patterns)]
    out(_json(services) if as_json else render.service_list(services, time.time(), _style()))
    return OK


def tree(socket: str | None, as_json: bool) -> int:
    with connect(socket) as conn:
        root = conn.request("TreeStatus", "Tree").get("root") or {}
    out(_json(root) if as_json else render.tree(root, time.time(), _style()))
    return OK


def logs(socket: str | None, name: str, lines: int, follow: bool) -> int:
    style = _style()
    from dynamod.ctl import logs as logd

    def check_name() -> None:
        try:
            with connect(socket) as c:
                c.request("ServiceStatus", "ServiceInfo", {"name": name})
        except CtlError as exc:
            if exc.code == UNKNOWN_SERVICE:
                raise

    conn = logd.connect(socket_path(socket))
    if conn is not None:
        with conn:
            return logd.show(conn, name, lines, follow, style, check_name)
    # No dynamod-logd: the lines svmgr keeps in memory.
    with connect(socket) as conn:
        batch = _log_batch(conn, name, lines)
        for line in render.log_lines(batch, style):
            out(line + "\n")
        if not follow:
            return OK
        last = batch[-1] if batch else None
        try:
            while True:
                sys.stdout.flush()
                time.sleep(LOG_POLL_INTERVAL)
                batch = _log_batch(conn, name, FOLLOW_WINDOW)
                new = _after(batch, last)
                for line in render.log_lines(new, style):
                    out(line + "\n")
                if new:
                    last = new[-1]
        except KeyboardInterrupt:
            return 130  # what a shell reports for Ctrl-C; not an error
    return OK


def _log_batch(conn: Conn, name: str, lines: int) -> list[list]:
    body = conn.request("GetLogs", "Logs", {"name": name, "lines": max(0, lines)})
    return [x for x in body.get("lines") or [] if isinstance(x, list) and len(x) == 2]


def _after(batch: list[list], last: list | None) -> list[list]:
    """The lines of ``batch`` newer than ``last`` (the last one printed).
    Matching (time, text) rather than time alone keeps two lines with the same
    timestamp apart; when ``last`` rotated out of the ring, fall back to time."""
    if last is None:
        return batch
    for i in range(len(batch) - 1, -1, -1):
        if batch[i] == last:
            return batch[i + 1 :]
    return [x for x in batch if isinstance(x[0], (int, float)) and x[0] > last[0]]


def _ignore_error(conn: Conn, rid: int, expect: str) -> dict:
    """A response that is nice to have (status' log lines): errors, e.g. from
    an older server without GetLogs, leave it out."""
    try:
        return conn.recv(rid, expect)
    except CtlError:
        return {}


# --- commands that change things ------------------------------------------------

_VERBS = {"StartService": "started", "StopService": "stopped", "RestartService": "restarted",
          "TryRestartService": "restarted"}


def change(socket: str | None, request: str, names: Sequence[str], no_block: bool = False,
           job_mode: str = "replace") -> int:
    """start / stop / restart / try-restart: each is a job; the requests
    are pipelined (the daemon works on up to 64 at once) and answered in the
    order given. No timeout: the daemon answers when the job ends, which may
    take as long as a readiness timeout. Each answer is printed with the
    other services the job started, stopped or blocked. Exit code: the
    highest of the failures."""
    code = OK
    body_of = {"name": "", "mode": job_mode, "no_block": no_block}
    with connect(socket, timeout=None) as conn:
        for name, rid in ahead(names, lambda n: conn.send(request, {**body_of, "name": n})):
            try:
                body = conn.recv(rid, "ServiceInfo")
            except CtlError as exc:
                error(exc.message)  # one line: the reason is in the message
                _effects(exc.body.get("job"))
                code = max(code, exc.code)
                continue
            job = body.get("job") or {}
            info = body.get("service") or {}
            if no_block and job.get("result") is None:
                out(f"queued job {job.get('id')}: {job.get('type', '?')} {info.get('name', name)}\n")
                continue
            what = str(info.get("state", "?"))
            if info.get("pid") is not None and what not in ("stopped", "failed", "exited"):
                what += f", pid {info['pid']}"
            verb = "left" if job.get("result") == "skipped" else _VERBS[request]
            if verb == "left":
                what += ": not running"
            out(f"{verb} {info.get('name', name)} ({what})\n")
            _effects(job)
    return code


def _effects(job: object) -> None:
    """The other services a job moved, each with the state it reached."""
    if not isinstance(job, dict):
        return
    for e in job.get("effects") or []:
        if not isinstance(e, dict):
            continue
        line = f"  {e.get('name', '?')}: {e.get('state', '?')}"
        if e.get("reason"):
            line += f" ({e['reason']})"
        out(line + "\n")
    if isinstance(job.get("effects_omitted"), int):
        out(f"  ... and {job['effects_omitted']} more\n")


def reload(socket: str | None) -> int:
    with connect(socket, timeout=None) as conn:
        try:
            body = conn.request("Reload", "ReloadResult")
        except CtlError as exc:
            raise CtlError(exc.code, f"reload failed: {exc.message}", exc.details) from None
    out(render.reload_result(body))
    return OK


def shutdown(socket: str | None, kind: str) -> int:
    with connect(socket, timeout=None) as conn:
        body = conn.request("Shutdown", "Ack", {"kind": kind})
    out(f"{body.get('message') or kind + ' requested'}\n")
    return OK
