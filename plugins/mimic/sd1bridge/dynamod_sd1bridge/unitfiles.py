"""systemctl enable/disable/mask/unmask/kill/reset-failed, mapped onto
svmgr's EnableService, DisableService, MaskService, UnmaskService,
KillService and ResetFailed (docs/protocol.md, "The systemctl verbs").

dynamod records enablement in its override directory, not with symlinks,
so the ``changes`` arrays these methods return are empty: systemctl then
prints nothing, as it does when there was nothing to change, and
``carries_install_info`` is true so that it does not warn about units
without an [Install] section.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dynamod_mimic_common import CallContext, DBusError
from dynamod_mimic_common import errors as E

from dynamod.ipc.client import RemoteError

from .errors import NO_SUCH_PROCESS, UNIT_MASKED, no_such_unit, translate
from .names import split_unit

if TYPE_CHECKING:
    from .manager import Bridge

#: systemd's KillUnit whom values -> svmgr's (the -fail variants only change
#: whether "nothing to signal" is an error, which it always is here)
WHOM = {"all": "all", "main": "main", "control": "control",
        "all-fail": "all", "main-fail": "main", "control-fail": "control"}

_REQUESTS = {"enable": "EnableService", "disable": "DisableService", "mask": "MaskService",
             "unmask": "UnmaskService"}


def _service_of(file: str) -> tuple[str, str]:
    """(unit, service name) for a unit file argument: a name or a path."""
    unit = os.path.basename(file)
    kind, name = split_unit(unit)
    if kind != "service":
        raise DBusError(E.FILE_NOT_FOUND if kind == "" else E.NOT_SUPPORTED,
                        f"Unit file {unit} does not exist." if kind == ""
                        else f"{unit}: only services have unit files in dynamod")
    return unit, name


async def change(bridge: Bridge, ctx: CallContext, verb: str, files: list[str],
                 runtime: bool) -> list[tuple[str, str, str]]:
    await ctx.require_root(f"{verb} of unit files")
    if runtime:
        raise DBusError(E.NOT_SUPPORTED, f"{verb} --runtime is not supported by dynamod: "
                        "its enablement is always persistent")
    targets = [_service_of(f) for f in files]
    for unit, name in targets:
        try:
            await bridge.model.request(_REQUESTS[verb], {"name": name})
        except RemoteError as exc:
            if exc.code == "failed" and "masked" in exc.message:
                raise DBusError(UNIT_MASKED, f"Unit file {unit} is masked.") from exc
            if exc.code == "unknown-service":
                raise DBusError(E.FILE_NOT_FOUND, f"Unit file {unit} does not exist.") from exc
            raise translate(exc, unit) from exc
        except Exception as exc:
            raise translate(exc, unit) from exc
    bridge.unit_files_changed()
    return []


async def kill(bridge: Bridge, ctx: CallContext, unit: str, whom: str, signal: int) -> None:
    await ctx.require_root(f"kill {unit}")
    kind, name = split_unit(unit)
    if kind != "service":
        raise no_such_unit(unit)
    if whom not in WHOM:
        raise E.invalid_args(f"Invalid who argument: {whom}")
    try:
        await bridge.model.request("KillService", {"name": name, "signal": signal, "whom": WHOM[whom]})
    except RemoteError as exc:
        if exc.code == "failed" and "to signal" in exc.message:
            raise DBusError(NO_SUCH_PROCESS, exc.message) from exc
        if exc.code == "bad-request":
            raise E.invalid_args(exc.message) from exc
        raise translate(exc, unit) from exc
    except Exception as exc:
        raise translate(exc, unit) from exc


async def reset_failed(bridge: Bridge, ctx: CallContext, unit: str | None) -> None:
    await ctx.require_root(f"reset-failed {unit or 'of every unit'}")
    body = {}
    if unit is not None:
        kind, name = split_unit(unit)
        if kind != "service":
            raise no_such_unit(unit)
        body = {"name": name}
    try:
        await bridge.model.request("ResetFailed", body)
    except Exception as exc:
        raise translate(exc, unit or "") from exc
