"""Control requests for the systemctl-style verbs: enable, disable, mask,
unmask, reset-failed, kill, the files of a service and its drop-in.

A mixin of :class:`dynamod.svmgr.control.Control` (which dispatches
``do_<Type>``), kept apart from the socket server and the job requests.
Every change is written to the override directory
(:mod:`dynamod.config.overrides`) *before* the running manager is told, and
both happen without an ``await`` in between: concurrent requests from any
number of clients are applied one after the other, and what is on disk is
always what the manager believes.
"""

from __future__ import annotations

import os
from typing import Any

from dynamod.config import overrides as ov
from dynamod.config.units import parse_signal
from dynamod.ipc.schema import Message, error, response
from dynamod.ipc.server import Connection
from dynamod.svmgr import effects as fx
from dynamod.svmgr import states as st
from dynamod.svmgr.waitstatus import signal_name

# A ServiceFiles answer must fit one frame with its envelope.
FILES_BYTES = 56 * 1024


class UnitVerbs:
    """``do_*`` handlers; the host class provides ``manager`` and ``config_dir``."""

    manager: Any
    config_dir: str | None

    def absolute_paths(self, info: dict[str, Any]) -> dict[str, Any]:
        """``source`` and ``dropin`` as absolute paths (status shows where
        the files are, wherever svmgr was started from)."""
        for key in ("source", "dropin"):
            value = info.get(key)
            if isinstance(value, str) and value and not value.startswith("<"):
                info[key] = _abs(self.config_dir, value)
        return info

    # ----------------------------------------------------- enable and mask
    def _unit_change(self, msg: Message, *, enabled: bool | None = None,
                     masked: bool | None = None) -> Message:
        name = msg.body["name"]
        s = self.manager.get(name)  # KeyError: unknown-service
        if self.config_dir is None:
            return error(msg, "failed", "this service manager has no configuration directory to write to")
        path = ov.state_path(self.config_dir, name)
        current, _ = ov.parse_state(_read(path) or "")
        if enabled is True and (current.masked if masked is None else masked):
            return error(msg, "failed", f"{name} is masked: unmask it before enabling it "
                         f"('dynamodctl unmask {name}')")
        new = ov.UnitState(
            current.enabled if enabled is None else enabled,
            current.masked if masked is None else masked,
        )
        changed = new != current
        if changed:
            try:
                ov.write_state(self.config_dir, name, new)
            except OSError as exc:
                return error(msg, "failed", f"cannot write {path}: {exc.strerror or exc}; nothing changed")
        eff_enabled = s.cfg.enabled if new.enabled is None else new.enabled
        self.manager.engine.set_unit_state(name, eff_enabled, new.masked)
        info = s.info()
        what = {(True, None): "enabled", (False, None): "disabled", (None, True): "masked",
                (None, False): "unmasked"}[(enabled, masked)]
        note = f"{what} {name}" if changed else f"{name} was already {what}"
        self.manager.log(f"{note} ({path})" if changed else note)
        return response(msg, "UnitFileChange", {
            "name": name, "path": path, "changed": changed, "enabled": info["enabled"],
            "masked": info["masked"], "enablement": info["enablement"], "message": note,
        })

    async def do_EnableService(self, conn: Connection, msg: Message) -> Message:
        return self._unit_change(msg, enabled=True)

    async def do_DisableService(self, conn: Connection, msg: Message) -> Message:
        return self._unit_change(msg, enabled=False)

    async def do_MaskService(self, conn: Connection, msg: Message) -> Message:
        return self._unit_change(msg, masked=True)

    async def do_UnmaskService(self, conn: Connection, msg: Message) -> Message:
        return self._unit_change(msg, masked=False)

    # -------------------------------------------------------- reset-failed
    async def do_ResetFailed(self, conn: Connection, msg: Message) -> Message:
        name = msg.body.get("name")
        if name is not None:
            s = self.manager.get(name)
            if s.load_error is not None:
                return error(msg, "failed", f"{name} stays failed: its configuration was refused "
                             "(fix the file, then 'dynamodctl reload')", [s.load_error])
            names = [name]
        else:
            names = sorted(self.manager.services)
        done = self.manager.reset_failed(names)
        text = f"reset {', '.join(done)}" if done else "nothing was failed"
        return response(msg, "Ack", {"message": text})

    # ---------------------------------------------------------------- kill
    async def do_KillService(self, conn: Connection, msg: Message) -> Message:
        name = msg.body["name"]
        s = self.manager.get(name)
        try:
            sig = parse_signal(msg.body.get("signal", "TERM"))
        except ValueError as exc:
            return error(msg, "bad-request", f"KillService: field 'signal': {exc}")
        whom = msg.body.get("whom") or "all"
        control = sorted(self.manager.handle(name).control_pids)
        if whom == "control":
            pids = control
        elif s.state not in st.ALIVE or s.pid is None:
            return error(msg, "failed", f"{name} is not running ({s.state}): no process to signal")
        else:
            pids = [s.main_pid] if whom == "main" else sorted(s.pids) + control
        if not pids:
            return error(msg, "failed", f"{name} has no {'control ' if whom == 'control' else ''}process to signal")
        if whom == "all":
            # Through the isolation plugin when there is one: the whole cgroup.
            main = (s.pid, *(p for p in (s.main_pid_,) if p is not None))
            self.manager.executor.execute(fx.Kill(name, sig, main, group=True))
            rest = control
        else:
            rest = pids
        for pid in rest:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            except PermissionError as exc:
                return error(msg, "failed", f"cannot signal pid {pid} of {name}: {exc.strerror}")
        label = signal_name(sig)
        self.manager.log(f"{name}: sent {label} to {whom} ({', '.join(map(str, pids))}) on request")
        return response(msg, "Ack", {"message": f"sent {label} to {name} (pid {', '.join(map(str, pids))})"})

    # ------------------------------------------------------- files and edit
    async def do_GetServiceFiles(self, conn: Connection, msg: Message) -> Message:
        name = msg.body["name"]
        s = self.manager.get(name)
        root = self.config_dir
        files: list[dict[str, Any]] = []
        source = s.cfg.source
        if source.startswith("<plugin "):
            text = next((d.text for d, _p in self.manager.ext.definitions if d.name == name), None)
            files.append({"path": source, "kind": "definition", "text": text if isinstance(text, str) else ""})
        elif source:
            files.append(self._file(conn, _abs(root, source), "definition"))
        if root is not None:
            for path, kind in ((ov.dropin_path(root, name), "override"), (ov.state_path(root, name), "state")):
                if os.path.exists(path):
                    files.append(self._file(conn, path, kind))
        size = 0
        for f in files:
            size += len(f["path"]) + 64
            room = max(0, FILES_BYTES - size)
            data = f["text"].encode()
            if len(data) > room:
                f["text"] = data[:room].decode(errors="ignore")
                f["truncated"] = True
            size += len(f["text"].encode())
        return response(msg, "ServiceFiles", {"name": name, "files": files})

    def _override_problems(self, name: str, text: str) -> list[str]:
        """Why the configuration would be worse with ``text`` as NAME's
        drop-in: NAME refused, or errors (an unknown dependency, a cycle)
        that the configuration does not have now and Reload would refuse."""
        from dynamod.config.loader import load_config

        now = {str(d) for d in load_config(self.config_dir, self.manager.ext).errors}
        cfg = load_config(self.config_dir, self.manager.ext, dropins={name: text})
        problems = [f"{d.location}: {d.message}" for d in cfg.errors if str(d) not in now]
        if name not in cfg.services and not problems:
            ref = cfg.refused.get(name)
            problems = list(ref.errors) if ref is not None else [f"{name} would not be a service"]
        return problems

    def _file(self, conn: Connection, path: str, kind: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": path, "kind": kind, "text": ""}
        try:
            st_ = os.stat(path)
            # svmgr may read what the asking user may not: a file that is not
            # world-readable is shown only to root and to svmgr's own user.
            if conn.peer_uid not in (0, os.getuid()) and not st_.st_mode & 0o004:
                entry["error"] = "not readable by you"
                return entry
            entry["text"] = _read(path) or ""
        except OSError as exc:
            entry["error"] = exc.strerror or str(exc)
        return entry

    async def do_SetServiceOverride(self, conn: Connection, msg: Message) -> Message:
        """Check the drop-in against the whole configuration; save it only
        if the service would load with it. It applies at the next Reload."""
        name = msg.body["name"]
        self.manager.get(name)
        if self.config_dir is None:
            return error(msg, "failed", "this service manager has no configuration directory to write to")
        text = msg.body["text"]
        path = ov.dropin_path(self.config_dir, name)
        empty = not text.strip()
        if not empty:
            problems = self._override_problems(name, text)
            if problems:
                return error(msg, "failed", f"{name} would not load with this override; nothing saved",
                             problems)
        try:
            changed = ov.remove(path) if empty else (_read(path) != text)
            if not empty and changed:
                ov.write_atomic(path, text)
        except OSError as exc:
            return error(msg, "failed", f"cannot write {path}: {exc.strerror or exc}; nothing changed")
        note = (("removed the override of " if changed else "no override to remove for ") + name if empty
                else ("saved the override of " if changed else "override unchanged for ") + name)
        self.manager.log(f"{note} ({path})")
        info = self.manager.services[name].info()
        return response(msg, "UnitFileChange", {
            "name": name, "path": path, "changed": changed, "enabled": info["enabled"],
            "masked": info["masked"], "enablement": info["enablement"], "message": note,
        })


def _abs(root: str | None, source: str) -> str:
    return source if os.path.isabs(source) or root is None else os.path.join(root, source)


def _read(path: str) -> str | None:
    from dynamod.config.source import SourceError, read_text

    try:
        return read_text(path)
    except SourceError:
        return None
