"""systemd1's own error names, and svmgr errors translated to them."""

from __future__ import annotations

from dynamod_mimic_common import DBusError
from dynamod_mimic_common import errors as E

from dynamod.ipc.client import RemoteError

from .model import Unavailable

NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
NO_UNIT_FOR_PID = "org.freedesktop.systemd1.NoUnitForPID"
NO_SUCH_JOB = "org.freedesktop.systemd1.NoSuchJob"
JOB_TYPE_NOT_APPLICABLE = "org.freedesktop.systemd1.JobTypeNotApplicable"
TRANSACTION_IS_DESTRUCTIVE = "org.freedesktop.systemd1.TransactionIsDestructive"
UNIT_MASKED = "org.freedesktop.systemd1.UnitMasked"
NO_SUCH_PROCESS = "org.freedesktop.systemd1.NoSuchProcess"


def no_such_unit(unit: str) -> DBusError:
    return DBusError(NO_SUCH_UNIT, f"Unit {unit} not found.")


def translate(exc: Exception, unit: str = "") -> DBusError:
    """A DBusError for an svmgr failure (so callers get a named reason)."""
    if isinstance(exc, Unavailable):
        return DBusError(E.FAILED, str(exc))
    if isinstance(exc, RemoteError):
        text = exc.message + ("".join(f"\n{d}" for d in exc.details) if exc.details else "")
        if exc.code == "unknown-service":
            return no_such_unit(unit) if unit else DBusError(NO_SUCH_UNIT, text)
        if exc.code == "permission-denied":
            return E.access_denied(text)
        if exc.code == "bad-request":
            return E.invalid_args(text)
        if "pending" in exc.message and "job" in exc.message:
            return DBusError(TRANSACTION_IS_DESTRUCTIVE, text)
        return DBusError(E.FAILED, text)
    if isinstance(exc, DBusError):
        return exc
    return DBusError(E.FAILED, f"{type(exc).__name__}: {exc}")
