"""Unit names and object paths.

A dynamod service ``NAME`` is the unit ``NAME.service``. A supervisor
``NAME`` is the unit ``NAME.slice`` and the root supervisor is ``-.slice``:
slices are systemd's tree of grouping units, as supervisors are dynamod's,
and clients that want "everything" ask for ``-.slice`` (``systemctl status``
with no unit lists its processes).
"""

from __future__ import annotations

from dynamod_mimic_common import child_path, unescape_label

MANAGER_PATH = "/org/freedesktop/systemd1"
UNIT_PREFIX = "/org/freedesktop/systemd1/unit"
JOB_PREFIX = "/org/freedesktop/systemd1/job"
ROOT_SUPERVISOR = "root"
ROOT_SLICE = "-.slice"

#: unit suffixes systemd knows; anything else is not a unit name at all
UNIT_TYPES = ("service", "socket", "target", "device", "mount", "automount",
              "swap", "timer", "path", "slice", "scope")


def unit_path(unit: str) -> str:
    return child_path(UNIT_PREFIX, unit)


def unit_from_label(label: str) -> str | None:
    """The unit name an escaped path element stands for."""
    return unescape_label(label)


def job_path(job_id: int) -> str:
    return f"{JOB_PREFIX}/{job_id}"


def service_unit(name: str) -> str:
    return f"{name}.service"


def supervisor_unit(name: str) -> str:
    return ROOT_SLICE if name == ROOT_SUPERVISOR else f"{name}.slice"


def unit_type(unit: str) -> str:
    """``service``, ``slice``, ...; "" for a name with no known suffix."""
    _, dot, suffix = unit.rpartition(".")
    return suffix if dot and suffix in UNIT_TYPES else ""


def split_unit(unit: str) -> tuple[str, str]:
    """(kind, dynamod name): ``("service", "web")`` for ``web.service``,
    ``("supervisor", "root")`` for ``-.slice``, ``("", unit)`` for units
    dynamod has no counterpart of."""
    kind = unit_type(unit)
    base = unit[: -(len(kind) + 1)] if kind else unit
    if kind == "service" and base:
        return "service", base
    if kind == "slice":
        if unit == ROOT_SLICE:
            return "supervisor", ROOT_SUPERVISOR
        if base:
            return "supervisor", base
    return "", unit
