"""The in-VM test runner (the ``vmtest`` service of the images).

Inert unless the kernel command line has ``dynamod.test=NAME``. Then it
waits until the services are up, runs its checks and those of any module in
/usr/lib/dynamod/vmtest/ (another plugin's tests: every function named
``check_*(ctx)`` returning a JSON-able dict, raising on failure), prints one
machine-readable line per check on the console::

    DYNAMOD-VMTEST {"check": "root", "ok": true, "data": {...}}
    DYNAMOD-VMTEST-DONE {"ok": true, "checks": 6, "uptime": 9.87}

and powers the machine off with ``dynamodctl shutdown poweroff`` (unless
``dynamod.test.poweroff=0``).

Parameters: ``dynamod.test.wait=a,b`` (services that must be up; default:
until no service is pending or starting), ``dynamod.test.timeout=S``
(default 60), ``dynamod.test.token=T`` (written to /var/lib/vmtest/token,
for the harness to find on the disk afterwards), ``dynamod.test.python=1``
(also time the interpreter's start-up and imports in the guest),
``dynamod.test.poweroff=0`` (stay up).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

PREFIX = "DYNAMOD-VMTEST"
CHECKS_DIR = "/usr/lib/dynamod/vmtest"
TOKEN_FILE = "/var/lib/vmtest/token"
SELF = "vmtest"
COMING_UP = {"pending", "starting", "waiting-ready"}
UP = {"running", "exited"}


def uptime() -> float:
    with open("/proc/uptime", encoding="ascii") as f:
        return float(f.read().split()[0])


def read_cmdline() -> dict[str, str]:
    try:
        from dynamod.init.phase_a import parse_cmdline

        with open("/proc/cmdline", encoding="utf-8") as f:
            return parse_cmdline(f.read())
    except OSError:
        return {}


class Console:
    def __init__(self, path: str = os.environ.get("DYNAMOD_VMTEST_CONSOLE", "/dev/console")) -> None:
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
        except OSError:
            self.fd = 2

    def line(self, text: str) -> None:
        data = (text + "\n").encode("utf-8", "replace")
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        self.line(f"{kind} {json.dumps(payload, sort_keys=True, default=str)}")


def ctl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dynamodctl", *args], capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ checks

def check_ready(ctx: dict[str, Any]) -> dict[str, Any]:
    """Wait until the services are up (or stop changing)."""
    cmd = ctx["cmdline"]
    want = [w for w in cmd.get("dynamod.test.wait", "").split(",") if w]
    deadline = time.monotonic() + float(cmd.get("dynamod.test.timeout", "60"))
    states: dict[str, str] = {}
    polls = 0
    while True:
        polls += 1
        res = ctl("list", "--json")
        if res.returncode == 0:
            services = json.loads(res.stdout or "[]")
            states = {s["name"]: s.get("state", "?") for s in services}
            if want:
                done = all(states.get(w) in UP for w in want)
            else:
                done = not any(st in COMING_UP for n, st in states.items() if n != SELF)
            if done:
                return {"uptime": uptime(), "states": states, "polls": polls}
        if time.monotonic() > deadline:
            raise AssertionError(f"services not up in time: {states or res.stderr.strip()}")
        time.sleep(0.3)


def check_dynamodctl(ctx: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    res = ctl("list")
    elapsed = time.monotonic() - started
    if res.returncode != 0:
        raise AssertionError(f"dynamodctl list exited {res.returncode}: {res.stderr.strip()}")
    return {"output": res.stdout, "seconds": round(elapsed, 3)}


def check_root(ctx: dict[str, Any]) -> dict[str, Any]:
    root = {}
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "/":
                root = {"source": parts[0], "fstype": parts[2], "options": parts[3]}
    probe = "/.vmtest-write-probe"
    try:
        with open(probe, "w") as f:
            f.write("x")
        os.unlink(probe)
        writable, error = True, ""
    except OSError as exc:
        writable, error = False, os.strerror(exc.errno or 0)
    with open("/proc/self/mounts", encoding="utf-8") as f:
        mounts = [ln.split()[1] for ln in f if ln.split()]
    return {**root, "writable": writable, "error": error, "mounts": mounts}


def check_persist(ctx: dict[str, Any]) -> dict[str, Any]:
    token = ctx["cmdline"].get("dynamod.test.token")
    if not token:
        return {"skipped": "no dynamod.test.token"}
    os.makedirs(os.path.dirname(TOKEN_FILE), exist_ok=True)
    with open(TOKEN_FILE, "w", encoding="utf-8") as f:  # no fsync: shutdown must sync
        f.write(token + "\n")
    return {"path": TOKEN_FILE, "token": token}


def check_python(ctx: dict[str, Any]) -> dict[str, Any]:
    """Interpreter start-up and import times in the guest."""
    out: dict[str, Any] = {}
    for label, code in (("startup", "pass"), ("svmgr", "import dynamod.svmgr.main"),
                        ("ctl", "import dynamod.ctl.main")):
        started = time.monotonic()
        res = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                             capture_output=True, text=True, timeout=60)
        wall = time.monotonic() - started
        total = 0
        for line in res.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and not parts[2].startswith("  ") and parts[1].strip().isdigit():
                total += int(parts[1])  # cumulative us of top-level imports
        out[label] = {"wall_ms": round(wall * 1000), "imports_ms": round(total / 1000)}
    return out


BUILTIN: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("ready", check_ready),
    ("dynamodctl", check_dynamodctl),
    ("root", check_root),
    ("persist", check_persist),
]
OPTIONAL = {"python": check_python}  # dynamod.test.python=1


def extra_checks(directory: str = CHECKS_DIR) -> list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]]:
    out = []
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".py"))
    except OSError:
        return out
    for name in names:
        path = os.path.join(directory, name)
        spec = importlib.util.spec_from_file_location(f"vmtest_{name[:-3]}", path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            def broken(ctx: dict[str, Any], exc: Exception = exc, path: str = path) -> dict[str, Any]:
                raise AssertionError(f"cannot load {path}: {exc}")

            out.append((name[:-3], broken))
            continue
        for attr in sorted(dir(module)):
            if attr.startswith("check_") and callable(getattr(module, attr)):
                out.append((f"{name[:-3]}.{attr[6:]}", getattr(module, attr)))
    return out


def run(console: Console, cmdline: dict[str, str]) -> bool:
    ctx: dict[str, Any] = {"cmdline": cmdline, "test": cmdline.get("dynamod.test", "")}
    all_ok = True
    count = 0
    optional = [(n, fn) for n, fn in OPTIONAL.items() if cmdline.get(f"dynamod.test.{n}") == "1"]
    for name, fn in [*BUILTIN, *optional, *extra_checks()]:
        count += 1
        started = time.monotonic()
        try:
            data, ok, error = fn(ctx), True, ""
        except Exception as exc:
            data, ok = {}, False
            error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, AssertionError):
                error += " | " + " / ".join(traceback.format_exc().strip().splitlines()[-3:])
        all_ok &= ok
        ctx[name] = data
        console.emit(PREFIX, {"check": name, "ok": ok, "error": error, "data": data,
                              "seconds": round(time.monotonic() - started, 3)})
        if name == "ready" and not ok:
            break  # nothing else is meaningful
    console.emit(f"{PREFIX}-DONE", {"ok": all_ok, "checks": count, "uptime": uptime(), "test": ctx["test"]})
    return all_ok


def main() -> None:
    cmdline = read_cmdline()
    if "dynamod.test" not in cmdline:
        return  # an ordinary boot: nothing to do
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    console = Console()
    console.emit(f"{PREFIX}-START", {"uptime": uptime(), "test": cmdline.get("dynamod.test", "")})
    try:
        run(console, cmdline)
    except Exception as exc:  # the harness must always get an answer
        console.emit(f"{PREFIX}-DONE", {"ok": False, "error": repr(exc), "uptime": uptime()})
    if cmdline.get("dynamod.test.poweroff", "1") != "0":
        console.emit(f"{PREFIX}-POWEROFF", {"uptime": uptime()})
        res = ctl("shutdown", "poweroff")
        console.emit(f"{PREFIX}-SHUTDOWN", {"rc": res.returncode, "output": (res.stdout + res.stderr).strip(),
                                            "uptime": uptime()})
    while True:  # svmgr stops us (SIGTERM) on the way down
        signal.pause()


if __name__ == "__main__":
    main()
