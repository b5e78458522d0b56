"""The systemctl-style verbs: enable, disable, mask, unmask, is-enabled,
is-failed, reset-failed, show, cat, kill, edit.

Each is one or more control requests (docs/protocol.md, "The systemctl
verbs"), the same ones the systemd1 D-Bus bridge sends for ``systemctl``;
the ``--now`` variants add the job request (StartService, StopService) the
way systemctl does. Exit codes follow systemctl's (docs/cli.md).
"""

from __future__ import annotations

import os

from dynamod.ctl.commands import IN_FLIGHT, ahead, change, connect, error, out
from dynamod.ctl.exits import FAILED, OK, UNKNOWN_SERVICE, CtlError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

# The service-map keys `show` prints, in this order (docs/cli.md, "show");
# keys a newer server adds follow, sorted.
SHOW_KEYS = (
    "name", "description", "state", "substate", "reason", "since", "type", "readiness",
    "supervisor", "enabled", "enablement", "masked", "explicit", "pid", "main_pid",
    "control_pids", "restarts", "restart_policy", "restart_budget", "exit", "status_text",
    "requires", "wants", "after", "before", "source", "dropin", "load_error", "job",
)  # fmt: skip

_REQUEST = {"enable": "EnableService", "disable": "DisableService", "mask": "MaskService",
            "unmask": "UnmaskService"}
# What --now adds after the file change.
_NOW = {"enable": "StartService", "disable": "StopService", "mask": "StopService"}


def unit_file(socket: str | None, verb: str, names: Sequence[str], now: bool) -> int:
    """enable / disable / mask / unmask; ``now`` also starts (enable) or
    stops (disable, mask) each service that the change succeeded for."""
    code = OK
    done: list[str] = []
    with connect(socket) as conn:
        for name, rid in ahead(names, lambda n: conn.send(_REQUEST[verb], {"name": n}), IN_FLIGHT):
            try:
                body = conn.recv(rid, "UnitFileChange")
            except CtlError as exc:
                error(exc.message, exc.details)
                code = max(code, exc.code)
                continue
            done.append(name)
            if body.get("changed"):
                out(f"{body.get('message') or verb + 'd ' + name} ({body.get('path', '?')})\n")
            else:
                out(f"{body.get('message') or name + ' unchanged'}\n")
    if now and done and verb in _NOW:
        code = max(code, change(socket, _NOW[verb], done))
    return code


def is_state(socket: str | None, names: Sequence[str], quiet: bool, key: str, wanted: str) -> int:
    """is-enabled (``key`` enablement) and is-failed (``key`` state): print
    each service's value; exit 0 if at least one is ``wanted`` (as
    systemctl), else 4 if a name was unknown, else 1."""
    hit = False
    unknown = False
    with connect(socket) as conn:
        for _, rid in ahead(names, lambda n: conn.send("ServiceStatus", {"name": n})):
            try:
                info = conn.recv(rid, "ServiceInfo").get("service") or {}
            except CtlError as exc:
                if exc.code != UNKNOWN_SERVICE:
                    raise
                unknown = True
                if not quiet:
                    error(exc.message)
                continue
            value = str(info.get(key, "?"))
            hit = hit or value == wanted
            if not quiet:
                out(f"{value}\n")
    return OK if hit else UNKNOWN_SERVICE if unknown else FAILED


def reset_failed(socket: str | None, names: Sequence[str]) -> int:
    code = OK
    with connect(socket) as conn:
        if not names:
            conn.request("ResetFailed", "Ack", {})
            return OK
        for _, rid in ahead(names, lambda n: conn.send("ResetFailed", {"name": n})):
            try:
                conn.recv(rid, "Ack")
            except CtlError as exc:
                error(exc.message, exc.details)
                code = max(code, exc.code)
    return code


def show_value(value: object) -> str:
    """A service-map value as ``show`` prints it (docs/cli.md, "show")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(show_value(v) for v in value)
    if isinstance(value, dict):
        if "id" in value and "type" in value:  # a job summary
            return f"{value.get('id')} {value.get('type')} {value.get('state', '')}".rstrip()
        return " ".join(f"{k}={show_value(v)}" for k, v in sorted(value.items()))
    return str(value).replace("\n", " ")


def show_lines(info: dict) -> list[tuple[str, str]]:
    """Every property of a service map, ``extra`` flattened as ``extra.KEY``."""
    keys = list(SHOW_KEYS) + sorted(k for k in info if k not in SHOW_KEYS and k != "extra")
    pairs = [(k, show_value(info.get(k))) for k in keys]
    extra = info.get("extra")
    if isinstance(extra, dict):
        pairs.extend((f"extra.{k}", show_value(v)) for k, v in sorted(extra.items()))
    return pairs


def show(socket: str | None, names: Sequence[str], props: Sequence[str], value_only: bool) -> int:
    """``show NAME... [-p PROP...] [--value]``: key=value lines, a blank
    line between services. An unknown property is an error (exit 1)."""
    wanted = [p for arg in props for p in arg.split(",") if p]
    code = OK
    with connect(socket) as conn:
        for i, (_, rid) in enumerate(ahead(names, lambda n: conn.send("ServiceStatus", {"name": n}))):
            try:
                info = conn.recv(rid, "ServiceInfo").get("service") or {}
            except CtlError as exc:
                error(exc.message)
                code = max(code, exc.code)
                continue
            pairs = show_lines(info)
            if wanted:
                by_key = dict(pairs)
                missing = [p for p in wanted if p not in by_key]
                if missing:
                    raise CtlError(FAILED, f"unknown propert{'y' if len(missing) == 1 else 'ies'} "
                                   f"{', '.join(missing)} (see 'dynamodctl show NAME' for all of them)")
                pairs = [(p, by_key[p]) for p in wanted]
            if i and (len(pairs) > 1 or not value_only):
                out("\n")
            out("".join((f"{v}\n" if value_only else f"{k}={v}\n") for k, v in pairs))
    return code


def cat(socket: str | None, names: Sequence[str]) -> int:
    """The files that define each service: its definition, then its drop-in
    and its enable/mask state from the override directory."""
    code = OK
    with connect(socket) as conn:
        for i, (_, rid) in enumerate(ahead(names, lambda n: conn.send("GetServiceFiles", {"name": n}))):
            try:
                files = conn.recv(rid, "ServiceFiles").get("files") or []
            except CtlError as exc:
                error(exc.message)
                code = max(code, exc.code)
                continue
            if i:
                out("\n")
            for j, f in enumerate(x for x in files if isinstance(x, dict)):
                label = {"override": " (override)", "state": " (enable/mask state)"}.get(str(f.get("kind")), "")
                if j:
                    out("\n")
                out(f"# {f.get('path', '?')}{label}\n")
                if f.get("error"):
                    error(f"{f.get('path')}: {f['error']}")
                    code = max(code, FAILED)
                    continue
                text = str(f.get("text") or "")
                out(text if text.endswith("\n") or not text else text + "\n")
                if f.get("truncated"):
                    out("# ... (truncated: too large to send)\n")
    return code


def kill(socket: str | None, names: Sequence[str], sig: str, whom: str) -> int:
    code = OK
    body: dict = {"signal": int(sig) if sig.isdigit() else sig, "whom": whom}
    with connect(socket) as conn:
        for _, rid in ahead(names, lambda n: conn.send("KillService", {**body, "name": n})):
            try:
                conn.recv(rid, "Ack")
            except CtlError as exc:
                error(exc.message)
                code = max(code, exc.code)
    return code


_TEMPLATE = """\
# Override for {name}: the tables and keys written here are merged over
# {source} (a key here replaces that key; a list replaces the list).
# It is checked before it is saved; an empty file (or comments only)
# removes the override. For example:
#
# [service]
# environment = {{ DEBUG = "1" }}
"""


def _editor() -> list[str]:
    import shlex
    import shutil

    for var in ("DYNAMOD_EDITOR", "EDITOR", "VISUAL"):
        if os.environ.get(var, "").strip():
            return shlex.split(os.environ[var])
    for name in ("editor", "nano", "vim", "vi"):
        if shutil.which(name):
            return [name]
    raise CtlError(FAILED, "no editor: set $EDITOR (or $DYNAMOD_EDITOR)")


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def edit(socket: str | None, name: str, no_reload: bool) -> int:
    """Open the service's drop-in in $EDITOR; the daemon checks it against
    the whole configuration and saves it only if the service still loads,
    then (unless ``no_reload``) reloads so that it takes effect."""
    import subprocess
    import tempfile

    with connect(socket) as conn:
        files = conn.request("GetServiceFiles", "ServiceFiles", {"name": name}).get("files") or []
    files = [f for f in files if isinstance(f, dict)]
    current = next((str(f.get("text") or "") for f in files if f.get("kind") == "override"), None)
    source = next((str(f.get("path")) for f in files if f.get("kind") == "definition"), "its file")
    original = current if current is not None else _TEMPLATE.format(name=name, source=source)
    fd, tmp = tempfile.mkstemp(prefix=f"dynamod-{name}-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(original)
    keep = False
    try:
        argv = [*_editor(), tmp]
        try:
            rc = subprocess.call(argv)
        except OSError as exc:
            raise CtlError(FAILED, f"cannot run the editor {argv[0]}: {exc.strerror or exc}; nothing saved") from None
        if rc != 0:
            raise CtlError(FAILED, f"the editor exited with {rc}; nothing saved")
        with open(tmp, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if text == original:
            out(f"{name}: no changes; nothing saved\n")
            return OK
        if _only_comments(text):
            if current is None:
                out(f"{name}: the override is empty; nothing saved\n")
                return OK
            text = ""
        with connect(socket) as conn:
            try:
                body = conn.request("SetServiceOverride", "UnitFileChange", {"name": name, "text": text})
            except CtlError as exc:
                keep = True
                exc.details.append(f"(your text is kept in {tmp})")
                raise
            out(f"{body.get('message')} ({body.get('path')})\n")
        if no_reload or not body.get("changed"):
            return OK
        from dynamod.ctl.commands import reload

        return reload(socket)
    finally:
        if not keep:
            os.unlink(tmp)
