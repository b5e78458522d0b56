"""The ``[cgroup]`` and ``[namespace]`` tables: validation at config load and
parsing into the values the rest of the plugin uses.

One parser per table serves both purposes: the validator runs it and returns
its problems as ``(key, message)`` pairs (``dynamodctl check`` shows them
with file and key); the spawn path runs it again on the table the loader
kept (``service.config.sections``), which is known to be valid by then.
Nothing here does I/O, so ``dynamodctl check`` can import it cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from dynamod.config.units import parse_size, type_name

Problems = list[tuple[str, str]]

# ---------------------------------------------------------------------------
# [cgroup]
# ---------------------------------------------------------------------------

CPU_PERIOD_US = 100_000  # the kernel's default cpu.max period
WEIGHT_RANGE = (1, 10_000)  # cpu.weight and io.weight


@dataclass(frozen=True)
class Limit:
    """One ``[cgroup]`` key: the controller it needs, the interface file it
    is written to, and what that file holds when the key is absent (so a
    limit removed by a reload does not linger in a reused cgroup).
    ``during_fork``: harmless to the manager, which is in the cgroup for the
    moment of the fork (:mod:`dynamod_isolation.hop`), so it is applied
    before; the others (the manager could be throttled or OOM-killed under
    them) right after."""

    key: str
    controller: str
    file: str
    default: str
    during_fork: bool = False


LIMITS: dict[str, Limit] = {
    lim.key: lim
    for lim in (
        Limit("memory-max", "memory", "memory.max", "max"),
        Limit("memory-high", "memory", "memory.high", "max"),
        Limit("cpu-weight", "cpu", "cpu.weight", "100", during_fork=True),
        Limit("cpu-max", "cpu", "cpu.max", f"max {CPU_PERIOD_US}"),
        Limit("pids-max", "pids", "pids.max", "max", during_fork=True),
        Limit("io-weight", "io", "io.weight", "default 100", during_fork=True),
    )
}
CONTROLLERS = ("cpu", "io", "memory", "pids")

_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")
_CPU_MAX_RAW = re.compile(r"\s*(max|\d+)\s+(\d+)\s*")


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _memory(value: object) -> str:
    size = parse_size(value, allow_infinity=True)
    return "max" if size is None else str(size)


def _weight(value: object) -> int:
    lo, hi = WEIGHT_RANGE
    if not _int(value) or not lo <= value <= hi:  # type: ignore[operator]
        raise ValueError(f"expected an integer from {lo} to {hi} (default 100), got {value!r}")
    return value  # type: ignore[return-value]


def _cpu_max(value: object) -> str:
    """``"50%"`` (half of one CPU; ``"200%"`` = two CPUs), ``"max"``, or the
    kernel's own ``"QUOTA PERIOD"`` in microseconds."""
    if not isinstance(value, str):
        raise ValueError(
            f"expected a string such as '50%', '200%', 'max' or '50000 100000', got {type_name(value)}"
        )
    if value.strip().lower() in ("max", "infinity"):
        return f"max {CPU_PERIOD_US}"
    m = _PERCENT.fullmatch(value)
    if m:
        quota = round(float(m.group(1)) * CPU_PERIOD_US / 100)
        if quota < 1000:  # the kernel refuses quotas under 1 ms
            raise ValueError(f"{value!r} is too small (at least 1% of a CPU)")
        return f"{quota} {CPU_PERIOD_US}"
    m = _CPU_MAX_RAW.fullmatch(value)
    if m:
        quota, period = m.group(1), int(m.group(2))
        if not 1000 <= period <= 1_000_000:
            raise ValueError(f"period must be from 1000 to 1000000 microseconds, got {period}")
        if quota != "max" and int(quota) < 1000:
            raise ValueError(f"quota must be at least 1000 microseconds, got {quota}")
        return f"{quota} {period}"
    raise ValueError(f"invalid cpu-max {value!r} (examples: '50%', '200%', 'max', '50000 100000')")


def _pids(value: object) -> str:
    if isinstance(value, str) and value.strip().lower() in ("max", "infinity"):
        return "max"
    if not _int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(f"expected a positive integer or 'max', got {value!r}")
    return str(value)


_CGROUP_PARSERS = {
    "memory-max": _memory,
    "memory-high": _memory,
    "cpu-weight": lambda v: str(_weight(v)),
    "cpu-max": _cpu_max,
    "pids-max": _pids,
    "io-weight": lambda v: f"default {_weight(v)}",
}


def parse_cgroup(table: dict[str, Any]) -> tuple[dict[str, str], Problems]:
    """``{key: value for its interface file}`` of the keys present, and the
    problems found."""
    values: dict[str, str] = {}
    problems: Problems = []
    for key, raw in table.items():
        parser = _CGROUP_PARSERS.get(key)
        if parser is None:
            problems.append((key, f"unknown key (known: {', '.join(LIMITS)})"))
            continue
        try:
            values[key] = parser(raw)
        except ValueError as exc:
            problems.append((key, str(exc)))
    # memory-high above memory-max is accepted, as the kernel does (it just
    # never takes effect): refusing it would refuse configs that work.
    return values, problems


def validate_cgroup(table: dict[str, Any]) -> Problems:
    return parse_cgroup(table)[1]


# ---------------------------------------------------------------------------
# [namespace]
# ---------------------------------------------------------------------------

NAMESPACES = ("pid", "mnt", "net", "uts", "ipc", "user", "cgroup")
PROTECT_SYSTEM = ("no", "full", "strict")
# protect-system = "full" makes these read-only (those that exist).
FULL_READ_ONLY = ("/usr", "/boot", "/efi", "/etc")
# protect-system = "strict" leaves these (and what is under them) writable.
STRICT_WRITABLE = ("/dev", "/proc", "/sys", "/run")
NOBODY = 65534  # the default host user (and group) of a user namespace's root
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
_ID_RANGE = re.compile(r"\s*(\d+)\s*[: ]\s*(\d+)\s*[: ]\s*(\d+)\s*")
MAX_ID = 2**32 - 2  # (uid_t) -1 is "no id"
_NAMESPACE_KEYS = (
    "enable", "hostname", "private-tmp", "protect-system", "writable-paths",
    "bind-mounts", "uid-map", "gid-map",
)


@dataclass(frozen=True)
class BindMount:
    source: str
    target: str
    writable: bool = False


@dataclass(frozen=True)
class IdRange:
    """``count`` ids from ``inside`` in the namespace are ``outside`` on
    the host (one line of /proc/PID/uid_map)."""

    inside: int
    outside: int
    count: int

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.count}"

    def maps(self, inner: int) -> bool:
        return self.inside <= inner < self.inside + self.count


DEFAULT_ID_MAP = (IdRange(0, NOBODY, 1),)


@dataclass(frozen=True)
class NamespaceOptions:
    """What a service's ``[namespace]`` asks for, with implications applied
    (mount options imply ``mnt``; a hostname implies ``uts``; ``pid`` brings
    its own /proc and so ``mnt``)."""

    namespaces: frozenset[str] = frozenset()
    hostname: str | None = None
    private_tmp: bool = False
    protect_system: str = "no"
    writable_paths: tuple[str, ...] = ()
    bind_mounts: tuple[BindMount, ...] = ()
    uid_map: tuple[IdRange, ...] = DEFAULT_ID_MAP
    gid_map: tuple[IdRange, ...] = DEFAULT_ID_MAP
    explicit: frozenset[str] = field(default_factory=frozenset)  # as written in enable

    @property
    def mount_setup(self) -> bool:
        """Whether anything has to be mounted inside the new namespace."""
        return bool(self.private_tmp or self.protect_system != "no" or self.bind_mounts)


def _abs_path(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an absolute path, got {type_name(value)}")
    if not value.startswith("/") or "\0" in value or "\n" in value:
        raise ValueError(f"expected an absolute path, got {value!r}")
    norm = "/" + "/".join(p for p in value.split("/") if p and p != ".")
    if "/../" in norm + "/":
        raise ValueError(f"'..' is not allowed in a path, got {value!r}")
    return norm


def _id_map(value: object) -> tuple[IdRange, ...]:
    """``"0:100000:65536"`` or a list of such strings (inside:outside:count)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(
            "expected 'INSIDE:OUTSIDE:COUNT' (e.g. '0:100000:65536') or a list of them"
        )
    out: list[IdRange] = []
    for item in items:
        m = _ID_RANGE.fullmatch(item) if isinstance(item, str) else None
        if not m:
            raise ValueError(f"expected 'INSIDE:OUTSIDE:COUNT' (e.g. '0:100000:65536'), got {item!r}")
        inside, outside, count = (int(g) for g in m.groups())
        if count < 1 or inside + count - 1 > MAX_ID or outside + count - 1 > MAX_ID:
            raise ValueError(f"range {item!r} is empty or beyond the largest id")
        out.append(IdRange(inside, outside, count))
    for i, a in enumerate(out):
        for b in out[i + 1 :]:
            if a.inside < b.inside + b.count and b.inside < a.inside + a.count:
                raise ValueError("ranges overlap inside the namespace")
            if a.outside < b.outside + b.count and b.outside < a.outside + a.count:
                raise ValueError("ranges overlap on the host")
    if len(out) > 340:  # the kernel's limit of lines in uid_map
        raise ValueError("at most 340 ranges")
    return tuple(out)


def _bind_mounts(value: object, problems: Problems) -> tuple[BindMount, ...]:
    if not isinstance(value, list):
        problems.append(("bind-mounts", f"expected an array of tables, got {type_name(value)}"))
        return ()
    out: list[BindMount] = []
    for i, item in enumerate(value):
        where = f"bind-mounts[{i}]"
        if not isinstance(item, dict):
            problems.append((where, f"expected a table {{source, target, writable}}, got {type_name(item)}"))
            continue
        unknown = sorted(set(item) - {"source", "target", "writable"})
        for key in unknown:
            problems.append((f"{where}.{key}", "unknown key (known: source, target, writable)"))
        if "source" not in item:
            problems.append((f"{where}.source", "missing (the path to mount)"))
            continue
        try:
            source = _abs_path(item["source"])
        except ValueError as exc:
            problems.append((f"{where}.source", str(exc)))
            continue
        try:
            target = _abs_path(item.get("target", source))
        except ValueError as exc:
            problems.append((f"{where}.target", str(exc)))
            continue
        writable = item.get("writable", False)
        if not isinstance(writable, bool):
            problems.append((f"{where}.writable", f"expected true or false, got {type_name(writable)}"))
            continue
        if target == "/":
            problems.append((f"{where}.target", "cannot bind-mount over /"))
            continue
        out.append(BindMount(source, target, writable))
    return tuple(out)


def parse_namespace(table: dict[str, Any]) -> tuple[NamespaceOptions, Problems]:
    problems: Problems = []
    for key in table:
        if key not in _NAMESPACE_KEYS:
            problems.append((key, f"unknown key (known: {', '.join(_NAMESPACE_KEYS)})"))

    enabled: set[str] = set()
    raw = table.get("enable", [])
    if not isinstance(raw, list):
        problems.append(("enable", f"expected an array of namespace names, got {type_name(raw)}"))
    else:
        for i, name in enumerate(raw):
            if name == "mount":  # the kernel's and unshare(1)'s spelling
                name = "mnt"
            if name not in NAMESPACES:
                problems.append((f"enable[{i}]", f"unknown namespace {name!r} (known: {', '.join(NAMESPACES)})"))
            elif name in enabled:
                problems.append((f"enable[{i}]", f"{name!r} is listed twice"))
            else:
                enabled.add(name)
    explicit = frozenset(enabled)

    hostname = table.get("hostname")
    if hostname is not None:
        if not isinstance(hostname, str) or len(hostname) > 64 or not _HOSTNAME.fullmatch(hostname):
            problems.append(("hostname", f"expected a host name (letters, digits, '-' and '.', at most 64), got {hostname!r}"))
            hostname = None
        else:
            enabled.add("uts")

    private_tmp = table.get("private-tmp", False)
    if not isinstance(private_tmp, bool):
        problems.append(("private-tmp", f"expected true or false, got {type_name(private_tmp)}"))
        private_tmp = False

    protect = table.get("protect-system", "no")
    if protect is False:
        protect = "no"
    if protect not in PROTECT_SYSTEM:
        hint = " (true is ambiguous: say 'full' or 'strict')" if protect is True else ""
        problems.append(("protect-system", f"expected one of {', '.join(map(repr, PROTECT_SYSTEM))}, got {protect!r}{hint}"))
        protect = "no"

    writable: list[str] = []
    raw_w = table.get("writable-paths", [])
    if not isinstance(raw_w, list):
        problems.append(("writable-paths", f"expected an array of absolute paths, got {type_name(raw_w)}"))
    else:
        for i, p in enumerate(raw_w):
            try:
                writable.append(_abs_path(p))
            except ValueError as exc:
                problems.append((f"writable-paths[{i}]", str(exc)))
    if writable and protect == "no":
        problems.append(("writable-paths", "only meaningful with protect-system = 'full' or 'strict'"))

    binds = _bind_mounts(table["bind-mounts"], problems) if "bind-mounts" in table else ()

    maps: dict[str, tuple[IdRange, ...]] = {}
    for key in ("uid-map", "gid-map"):
        if key in table:
            try:
                maps[key] = _id_map(table[key])
            except ValueError as exc:
                problems.append((key, str(exc)))
            if "user" not in enabled:
                problems.append((key, "needs 'user' in enable"))

    opts = NamespaceOptions(
        namespaces=frozenset(enabled),
        hostname=hostname,
        private_tmp=private_tmp,
        protect_system=protect,
        writable_paths=tuple(writable),
        bind_mounts=binds,
        uid_map=maps.get("uid-map", DEFAULT_ID_MAP),
        gid_map=maps.get("gid-map", DEFAULT_ID_MAP),
        explicit=explicit,
    )
    if opts.mount_setup or "pid" in enabled:
        opts = _with(opts, "mnt")
    return opts, problems


def _with(opts: NamespaceOptions, ns: str) -> NamespaceOptions:
    return replace(opts, namespaces=opts.namespaces | {ns})


def validate_namespace(table: dict[str, Any]) -> Problems:
    return parse_namespace(table)[1]
