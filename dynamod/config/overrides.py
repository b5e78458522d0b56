"""The override directory: what dynamodctl writes so that the administrator's
service files stay as they wrote them.

Layout (docs/config.md, "The override directory")::

    <config-dir>/overrides/NAME.toml        drop-in: merged over NAME's definition
                                            (dynamodctl edit)
    <config-dir>/overrides/state/NAME.toml  enabled = true|false, masked = true
                                            (enable, disable, mask, unmask)

Every file here is replaced atomically (a temporary file in the same
directory, fsync, rename, fsync of the directory): a reader, or a crash at
any moment, sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

from dynamod.config.source import SourceError, parse, read_text

OVERRIDES = "overrides"
STATE = "state"
STATE_KEYS = ("enabled", "masked")
STATE_HEADER = "# Written by dynamodctl enable/disable/mask/unmask; services/ is not changed.\n"

_tmp_names = itertools.count()


@dataclass(frozen=True)
class UnitState:
    """What enable/disable/mask said about one service. ``enabled`` None:
    nothing was said, the service file's ``enabled`` key decides."""

    enabled: bool | None = None
    masked: bool = False

    @property
    def empty(self) -> bool:
        return self.enabled is None and not self.masked


def dropin_path(config_dir: str, name: str) -> str:
    return os.path.join(config_dir, OVERRIDES, f"{name}.toml")


def state_path(config_dir: str, name: str) -> str:
    return os.path.join(config_dir, OVERRIDES, STATE, f"{name}.toml")


def parse_state(text: str) -> tuple[UnitState, list[str]]:
    """A state file's contents and the problems in it (each ignored)."""
    try:
        data = parse(text)
    except SourceError as exc:
        return UnitState(), [exc.message]
    problems = [f"{k}: unknown key (known: {', '.join(STATE_KEYS)})" for k in data if k not in STATE_KEYS]
    values: dict[str, bool] = {}
    for key in STATE_KEYS:
        if key in data:
            if isinstance(data[key], bool):
                values[key] = data[key]
            else:
                problems.append(f"{key}: must be true or false")
    return UnitState(values.get("enabled"), values.get("masked", False)), problems


def read_states(config_dir: str) -> tuple[dict[str, UnitState], list[tuple[str, str]]]:
    """Every service's state, and ``(file, problem)`` for what is wrong
    (a file that cannot be read counts as absent: the service file decides)."""
    folder = os.path.join(config_dir, OVERRIDES, STATE)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        return {}, [(f"{OVERRIDES}/{STATE}/", f"cannot read directory: {exc.strerror or exc}")]
    states: dict[str, UnitState] = {}
    problems: list[tuple[str, str]] = []
    for fname in names:
        if not fname.endswith(".toml") or fname.startswith("."):
            continue
        rel = f"{OVERRIDES}/{STATE}/{fname}"
        try:
            text = read_text(os.path.join(folder, fname))
        except SourceError as exc:
            problems.append((rel, exc.message))
            continue
        state, bad = parse_state(text)
        problems.extend((rel, p) for p in bad)
        if not state.empty:
            states[fname[: -len(".toml")]] = state
    return states, problems


def render_state(state: UnitState) -> str:
    lines = [STATE_HEADER]
    if state.enabled is not None:
        lines.append(f"enabled = {'true' if state.enabled else 'false'}\n")
    if state.masked:
        lines.append("masked = true\n")
    return "".join(lines)


def write_state(config_dir: str, name: str, state: UnitState) -> str:
    """Record ``state`` for ``name`` (an empty state removes the file);
    return the file's path."""
    path = state_path(config_dir, name)
    if state.empty:
        remove(path)
    else:
        write_atomic(path, render_state(state))
    return path


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` by a file holding ``text``, all or nothing."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    # Unique per process and call: concurrent writers never share a
    # temporary file; the last rename wins, whole.
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{next(_tmp_names)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _sync_dir(folder)


def remove(path: str) -> bool:
    """Remove ``path`` if it exists; whether it did."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _sync_dir(os.path.dirname(path))
    return True


def _sync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def dotted_keys(data: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """What a drop-in ``data`` brings to ``base``, dotted: the keys of its
    values (``service.environment.DEBUG``) and the tables ``base`` lacks."""
    out: list[str] = []
    stack: list[tuple[str, dict[str, Any], Any]] = [("", data, base)]
    while stack:
        prefix, table, under = stack.pop()
        for key, value in table.items():
            full = f"{prefix}{key}"
            if not isinstance(value, dict):
                out.append(full)
                continue
            there = under.get(key) if isinstance(under, dict) else None
            if not isinstance(there, dict):
                out.append(full)
            stack.append((full + ".", value, there))
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: tables key by key (at any
    depth), every other value replaced (a list is replaced, not extended)."""
    out = dict(base)
    stack = [(out, over)]
    while stack:
        dst, src = stack.pop()
        for key, value in src.items():
            if isinstance(value, dict) and isinstance(dst.get(key), dict):
                dst[key] = dict(dst[key])
                stack.append((dst[key], value))
            else:
                dst[key] = value
    return out
