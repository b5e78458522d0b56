"""Config fuzz over the reference configs (issue 13).

2,400 seeded mutants of ../shared/compat/dynamod-configs, one file changed
each: truncations, flipped and non-UTF-8 bytes, raw and escaped NUL bytes,
nesting 10,000 deep, dotted keys of 100,000 parts, huge and odd numbers,
non-ASCII digits, duplicate keys and tables, names with path traversal,
values of every wrong type, deleted and unknown keys, and special files in
place of a service file (FIFO, /dev/zero, a directory, a socket, broken and
looping links, a file over the size limit, /proc/self/mem).

* ``load_config``: never raises or blocks, every diagnostic names a file of
  the tree, every error of a refused service names its file, and what it
  accepts is sane for the service manager (no NUL, bounded numbers).
* ``dynamodctl check`` as a real process on a sample: exit 0 or 1, never an
  internal error, every finding names its file.
* A sample of the mutants ``check`` accepts runs under a real svmgr, its
  programs replaced by /bin/sleep and /bin/true: started, stopped on
  SIGTERM, no traceback or exception in its log.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from dynamod.config.extensions import Extensions, collect_extensions
from dynamod.config.graph import order_edges
from dynamod.config.loader import load_config
from dynamod.config.model import MAX_RESTARTS, RESTART_POLICIES, SystemConfig
from dynamod.config.units import MAX_DURATION, parse_signal
from dynamod.plugins import make_plugin_host
from dynamod.testing import Svmgr, deadline

COMPAT_DIR = Path(
    os.environ.get("DYNAMOD_COMPAT_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared/compat/dynamod-configs"
)
pytestmark = pytest.mark.skipif(not COMPAT_DIR.is_dir(), reason=f"{COMPAT_DIR} not found")

SEED = 13
N_MUTANTS = 2400
CHECK_SAMPLE = 40  # mutants checked by a real dynamodctl process
SVMGR_SAMPLE = 24  # accepted mutants run under a real svmgr

REFERENCE = {
    f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(COMPAT_DIR.glob("*/*.toml"))
}


# -- writing TOML (for value-level mutants and the svmgr copies) ---------------------


class Raw(str):
    """Written as is: a token no Python value gives (a 5,000-digit integer)."""


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_value(key)


def toml_value(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        out = []
        for c in value:
            if c in '"\\':
                out.append("\\" + c)
            elif ord(c) < 0x20 or ord(c) == 0x7F:
                out.append(f"\\u{ord(c):04x}")
            else:
                out.append(c)
        return '"' + "".join(out) + '"'
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml_document(data: dict[str, Any]) -> str:
    """Scalars and arrays first, then one [table] per top-level table (its
    own sub-tables as [a.b] headers, deeper ones inline)."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if not isinstance(table, dict):
            continue
        lines.append(f"[{toml_key(name)}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
        for sub, body in table.items():
            if isinstance(body, dict):
                lines.append(f"[{toml_key(name)}.{toml_key(sub)}]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


# -- mutants -------------------------------------------------------------------------

NASTY: list[Any] = [
    0, -1, 1, 65536, 2**31, 2**63 - 1, -(2**63), 2**63, 10**30, -(10**30),
    Raw("9" * 5000), Raw("-" + "9" * 4400), Raw("0x" + "f" * 40), Raw("1_000"),
    0.0, -0.0, 1e-320, 1e308, 1.5, float("inf"), float("-inf"), float("nan"),
    True, False, "", " ", "\n", "\0", "a\0b", "../x", "../../etc/passwd", "/", "..", ".", "~root",
    "x" * 5000, "\u202eevil", "caf\u00e9", "\u0661\u0660s", "\uff11\uff10s", "\u0967ms", "1\u00a0s",
    "9" * 400 + "s", "9" * 400, "1e400", "366d", "365d", "1m30s", "0", "-1s", "0.000001us",
    "SIGRTMIN+99", "SIGRTMIN+3", "SIGKILL", "SIGSTOP", "0", "64", "\u0661\u0665", "max", "infinity",
    "8E", "7E", "1.5G", "9" * 30 + "K", "none", "notify", "exec", "permanent", "temporary",
    "oneshot", "forking", "notify", "root", "nobody", "65534", "4294967295", "\u0661\u0662",
    [], [""], ["\0"], ["/bin/true"], ["/bin/true", "\0"], [[[]]], [1, "a"], ["../x"],
    {}, {"a": 1}, {"": ""}, {"\0": 1}, {"PATH": "/nonexistent"},
    datetime(1979, 5, 27, 7, 32), date(2000, 1, 1), time(12, 0),
]
BAD_UTF8 = [b"\xff", b"\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"]
NAMES = ["../x", "../../etc", "a/b", "/abs", "..", ".", "", "-x", "x y", "x\n", "caf\u00e9", "\0"]
SPECIAL = ["fifo", "dev-zero", "dev-null", "directory", "socket", "dangling", "loop", "too-large",
           "proc-mem"]


@dataclasses.dataclass
class Mutant:
    index: int
    kind: str
    rel: str  # the file changed (or added)
    content: bytes | None = None  # None: a special file of kind ``special``
    special: str = ""

    @property
    def id(self) -> str:
        return f"{self.index}-{self.kind}-{self.rel}"


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaf_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaf_paths(v, (*path, i))


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = value


def _delete(data: Any, path: tuple[Any, ...]) -> None:
    for step in path[:-1]:
        data = data[step]
    del data[path[-1]]


def _text_mutant(rng: random.Random, raw: bytes, kind: str) -> bytes:
    lines = raw.split(b"\n")
    if kind == "truncate":
        return raw[: rng.randrange(len(raw))]
    if kind == "flip":
        b = bytearray(raw)
        for _ in range(rng.randint(1, 5)):
            b[rng.randrange(len(b))] = rng.choice([0, 0xFF, 0x80, 0x22, 0x5B, 0x5D, 0x3D, 0x0A, rng.randrange(256)])
        return bytes(b)
    if kind == "bad-utf8":
        pos = rng.randrange(len(raw) + 1)
        return raw[:pos] + rng.choice(BAD_UTF8) + raw[pos:]
    if kind == "raw-nul":
        pos = rng.randrange(len(raw) + 1)
        return raw[:pos] + b"\0" + raw[pos:]
    if kind == "duplicate-line":
        i = rng.randrange(len(lines))
        return b"\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
    if kind == "duplicate-table":
        headers = [line for line in lines if line.startswith(b"[")]
        return raw + b"\n" + rng.choice(headers) + b"\n"
    if kind == "swap-lines":
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    if kind == "deep-nesting":
        n = rng.choice([31, 33, 100, 400, 1000, 10_000])
        value = rng.choice(["[" * n + "]" * n, "{a = " * n + "1" + "}" * n, "[{a = " * (n // 2) + "1" + "}]" * (n // 2)])
        at = rng.choice([b"", b"\n[readiness]\n", b"\n[service]\n"])
        return raw + at + b"\nx = " + value.encode() + b"\n"
    if kind == "long-key":
        n = rng.choice([31, 33, 1000, 100_000])
        key = ".".join(["a"] * n)
        return raw + rng.choice([f"\n[{key}]\n", f"\n{key} = 1\n", f"\nz = {{ {key} = 1 }}\n"]).encode()
    raise AssertionError(kind)


def _value_mutant(rng: random.Random, raw: bytes, kind: str) -> bytes:
    data = tomllib.loads(raw.decode())
    paths = [p for p in _leaf_paths(data) if p]
    path = rng.choice(paths)
    if kind == "value":
        _set(data, path, rng.choice(NASTY))
    elif kind == "nul-in-string":
        strings = [p for p in paths if isinstance(_get(data, p), str)]
        p = rng.choice(strings)
        s = _get(data, p)
        i = rng.randrange(len(s) + 1)
        _set(data, p, s[:i] + "\0" + s[i:])
    elif kind == "delete":
        _delete(data, path)
    elif kind == "unknown-key":
        tables = [p for p in [(), *paths] if isinstance(_get(data, p), dict)]
        target = _get(data, rng.choice(tables))
        target[rng.choice(["bogus", "max_restarts", "Exec", "", "\0", "type ", "a.b"])] = rng.choice(NASTY)
    elif kind == "name":
        table = "service" if "service" in data else "supervisor"
        data.setdefault(table, {})["name"] = rng.choice(NAMES)
    elif kind == "reference":
        # Point a reference elsewhere: a traversal, a missing or a refused name.
        target = rng.choice([*NAMES, "ghost", "dbus", "early-boot", "root", "nope"])
        if "service" in data:
            key = rng.choice(["requires", "wants", "after", "before", "supervisor"])
            if key == "supervisor":
                data["service"]["supervisor"] = target
            else:
                data.setdefault("dependencies", {})[key] = [target]
        else:
            data["supervisor"]["parent"] = target
    elif kind == "empty-string":
        strings = [p for p in paths if isinstance(_get(data, p), str)]
        _set(data, rng.choice(strings), "")
    else:
        raise AssertionError(kind)
    return toml_document(data).encode("utf-8", "surrogatepass")


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        data = data[step]
    return data


TEXT_KINDS = ["truncate", "flip", "bad-utf8", "raw-nul", "duplicate-line", "duplicate-table",
              "swap-lines", "deep-nesting", "long-key"]
VALUE_KINDS = ["value"] * 6 + ["nul-in-string", "delete", "unknown-key", "name", "reference", "empty-string"]


def make_mutants(n: int = N_MUTANTS, seed: int = SEED) -> list[Mutant]:
    rng = random.Random(seed)
    files = sorted(REFERENCE)
    out: list[Mutant] = []
    for i in range(n):
        roll = rng.random()
        rel = rng.choice(files)
        if roll < 0.04:
            special = SPECIAL[i % len(SPECIAL)]
            rel = rng.choice([rel, "services/zz.toml", "supervisors/zz.toml"])
            out.append(Mutant(i, f"special-{special}", rel, None, special))
        elif roll < 0.45:
            kind = rng.choice(TEXT_KINDS)
            out.append(Mutant(i, kind, rel, _text_mutant(rng, REFERENCE[rel], kind)))
        else:
            kind = rng.choice(VALUE_KINDS)
            out.append(Mutant(i, kind, rel, _value_mutant(rng, REFERENCE[rel], kind)))
    return out


def _make_special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind in ("dev-zero", "dev-null", "proc-mem", "dangling", "loop"):
        path.symlink_to({"dev-zero": "/dev/zero", "dev-null": "/dev/null", "proc-mem": "/proc/self/mem",
                         "dangling": str(path.parent / "nowhere"), "loop": str(path)}[kind])
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "too-large":
        path.write_bytes(REFERENCE.get("services/dbus.toml", b"") + b"#" * (1 << 20) + b"\n")
    else:
        raise AssertionError(kind)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def applied(root: Path, mutant: Mutant) -> Iterator[Path]:
    """The reference tree at ``root`` with ``mutant`` in place, restored after."""
    path = root / mutant.rel
    _remove(path)
    if mutant.content is not None:
        path.write_bytes(mutant.content)
    else:
        _make_special(path, mutant.special)
    try:
        yield root
    finally:
        _remove(path)
        if mutant.rel in REFERENCE:
            path.write_bytes(REFERENCE[mutant.rel])


def write_reference(root: Path) -> Path:
    for rel, raw in REFERENCE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(raw)
    return root




# -- what an accepted configuration must be ------------------------------------------------


def _strings_and_numbers(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        v = stack.pop()
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            stack.extend(getattr(v, f.name) for f in dataclasses.fields(v))
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
        else:
            yield v


def assert_sane(cfg: SystemConfig) -> None:
    """Nothing the service manager is handed can break it at run time."""
    for svc in cfg.services.values():
        for v in _strings_and_numbers(svc):
            if isinstance(v, str):
                assert "\0" not in v, svc.name
            elif isinstance(v, int) and not isinstance(v, bool):
                assert -(2**63) <= v < 2**63, svc.name
        for seconds in (svc.restart.delay, svc.restart.max_restart_window, svc.readiness.timeout,
                        svc.shutdown.stop_timeout):
            assert 0 <= seconds <= MAX_DURATION, svc.name
        assert 0 <= svc.restart.max_restarts <= MAX_RESTARTS
        assert svc.restart.policy in RESTART_POLICIES
        assert svc.exec and svc.exec[0]
        assert svc.supervisor in cfg.supervisors
    for sup in cfg.supervisors.values():
        assert 0 < sup.max_restart_window <= MAX_DURATION and 0 <= sup.max_restarts <= MAX_RESTARTS


def files_of(root: Path) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in root.glob("*/*")}


# -- the fuzz ------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    mutant: Mutant
    accepted: bool  # no error
    error_files: set[str]


@pytest.fixture(scope="module")
def extensions() -> Extensions:
    # The plugins check and svmgr load: their validators are fuzzed too.
    return collect_extensions(make_plugin_host("dynamod"))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, extensions: Extensions) -> list[Outcome]:
    root = write_reference(tmp_path_factory.mktemp("fuzz") / "etc")
    baseline = load_config(root, extensions)
    assert baseline.diagnostics == [], [str(d) for d in baseline.diagnostics]
    out: list[Outcome] = []
    for mutant in make_mutants():
        with applied(root, mutant), deadline(30, mutant.id):
            known = files_of(root) | {"services/", "supervisors/", "<plugins>"}
            cfg = load_config(root, extensions)
        for d in cfg.diagnostics:
            assert d.file in known, (mutant.id, str(d))
            assert d.message and "could not be validated" not in d.message, (mutant.id, str(d))
            str(d).encode("utf-8")  # printable: no lone surrogates
        for name, refused in cfg.refused.items():
            assert name not in cfg.services, mutant.id
            assert refused.errors, (mutant.id, name)
            assert all(e.startswith(refused.source + ": ") for e in refused.errors), (mutant.id, refused)
        assert_sane(cfg)
        out.append(Outcome(mutant, not cfg.errors, {d.file for d in cfg.errors}))
    return out


def test_load_config_never_raises(outcomes: list[Outcome]) -> None:
    assert len(outcomes) >= 2000
    kinds = {o.mutant.kind for o in outcomes}
    assert kinds >= set(TEXT_KINDS) | set(VALUE_KINDS) | {f"special-{s}" for s in SPECIAL}
    refused = [o for o in outcomes if not o.accepted]
    accepted = [o for o in outcomes if o.accepted]
    # Both sides are exercised, and every broken file is named.
    assert len(refused) > 1000 and len(accepted) > 100, (len(refused), len(accepted))
    for o in refused:
        if o.mutant.kind.startswith(("special-", "raw-nul", "bad-utf8", "deep-nesting")):
            assert o.mutant.rel in o.error_files, o.mutant.id


def ctl_check(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    return subprocess.run(
        [sys.executable, "-m", "dynamod.ctl.main", "check", "--config-dir", str(root), *extra],
        capture_output=True, text=True, env=env, timeout=60,
    )


def test_check_process_never_crashes(outcomes: list[Outcome], tmp_path: Path) -> None:
    root = write_reference(tmp_path / "etc")
    specials = {o.mutant.special: o for o in outcomes if o.mutant.special}
    sample = list(specials.values()) + outcomes[:: len(outcomes) // (CHECK_SAMPLE - len(specials))]
    for i, o in enumerate(sample):
        as_json = i % 2 == 1
        with applied(root, o.mutant):
            known = files_of(root) | {"services/", "supervisors/", "<plugins>"}
            r = ctl_check(root, *(["--json"] if as_json else []))
        assert r.returncode == (0 if o.accepted else 1), (o.mutant.id, r.stdout, r.stderr)
        assert r.stderr == "" and "internal error" not in r.stdout and "Traceback" not in r.stdout, o.mutant.id
        if as_json:
            findings = [json.loads(line) for line in r.stdout.splitlines()]
            assert {f["file"] for f in findings} <= known, o.mutant.id
            assert all(set(f) == {"severity", "file", "key", "line", "message"} for f in findings)
        else:
            for line in r.stdout.splitlines()[:-1]:
                severity, _, rest = line.partition(": ")
                assert severity in ("error", "warning"), line
                assert any(rest.startswith(f + ":") for f in known), (o.mutant.id, line)


# -- accepted mutants under a real svmgr ----------------------------------------------------

# Signals /bin/sleep ignores or stops on: stopping would wait for the
# mutant's stop-timeout (up to a year) before SIGKILL.
_HARMLESS = {signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH, signal.SIGSTOP,
             signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}


# Tells the notify socket READY=1, then becomes /bin/sleep (same pid).
NOTIFY_THEN_SLEEP = [
    "/usr/bin/python3", "-c",
    "import os, socket; a = os.environ['NOTIFY_SOCKET']; "
    "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', '\\0' + a[1:] if a[0] == '@' else a); "
    "os.execv('/bin/sleep', ['sleep', '3600'])",
]


def harmless(data: dict[str, Any]) -> dict[str, Any]:
    """A service file whose programs are /bin/sleep and /bin/true, and
    nothing a plugin would do to this machine: same values otherwise."""
    svc = data.get("service")
    if not isinstance(svc, dict):
        return data
    kind = svc.get("type", "simple")
    readiness = data.get("readiness")
    notify = kind == "notify" or (isinstance(readiness, dict) and readiness.get("type") == "notify")
    svc["exec"] = (["/bin/true"] if kind in ("oneshot", "forking")
                   else NOTIFY_THEN_SLEEP if notify else ["/bin/sleep", "3600"])
    shutdown = data.get("shutdown")
    if isinstance(shutdown, dict):
        if "stop-exec" in shutdown:
            shutdown["stop-exec"] = ["/bin/sh", "-c", 'kill "$MAINPID"']
        if "stop-signal" in shutdown and parse_signal(shutdown["stop-signal"]) in _HARMLESS:
            shutdown["stop-signal"] = "SIGTERM"
    if isinstance(readiness, dict) and "check-exec" in readiness:
        readiness["check-exec"] = ["/bin/true"]
    # dynamod-isolation is left out: its cgroups and namespaces are real,
    # and services of the same name in two managers' cgroup trees would
    # share cgroups (issue 13 point 6) with other tests running here.
    data.pop("cgroup", None)
    data.pop("namespace", None)
    return data


def _stuck(cfg: SystemConfig, states: dict[str, str]) -> list[str]:
    """Services still pending although everything they start after is up:
    the manager has work left to do."""
    up = {"running", "exited"}
    edges = order_edges(cfg.services)
    return [name for name, state in states.items()
            if state == "pending" and all(states.get(d, "running") in up for d in edges.get(name, ()))]


def _settled(mgr: Svmgr, cfg: SystemConfig) -> bool:
    return not _stuck(cfg, {k: v["state"] for k, v in mgr.services().items()})


def test_accepted_mutants_run_under_svmgr(
    outcomes: list[Outcome], tmp_path: Path, extensions: Extensions
) -> None:
    accepted = [o for o in outcomes if o.accepted and o.mutant.content is not None
                and o.mutant.content != REFERENCE.get(o.mutant.rel)]
    step = max(1, len(accepted) // SVMGR_SAMPLE)
    sample = accepted[::step][:SVMGR_SAMPLE]
    assert len(sample) >= 20
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    env["DYNAMOD_DISABLE_PLUGINS"] = "dynamod-isolation,dynamod-bootmedia"
    for n, o in enumerate(sample):
        root = tmp_path / f"m{n}"
        for rel, raw in {**REFERENCE, o.mutant.rel: o.mutant.content}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(toml_document(harmless(tomllib.loads(raw.decode()))))
        cfg = load_config(root, extensions)
        assert not cfg.errors, (o.mutant.id, [str(d) for d in cfg.errors])
        mgr = Svmgr(root, tmp_path / f"r{n}", env=env)
        try:
            assert set(mgr.services()) == set(cfg.services), o.mutant.id
            mgr.wait_for(partial(_settled, mgr, cfg), timeout=30,
                         what=f"{o.mutant.id}: every service it can start started")
            code = mgr.stop(timeout=60)
        finally:
            if mgr.proc is not None and mgr.proc.poll() is None:
                mgr.proc.kill()
                mgr.proc.wait()
        log = mgr.log()
        assert code == 0, (o.mutant.id, code, log[-3000:])
        for bad in ("Traceback", "Exception", "exception", "OverflowError", "embedded null byte"):
            assert bad not in log, (o.mutant.id, bad, log[-3000:])
