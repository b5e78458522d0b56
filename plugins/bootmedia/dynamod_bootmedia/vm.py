"""Booting the images in QEMU (TCG: no KVM here), interactively or as a test.

The test harness boots with ``dynamod.test=NAME``: the image's ``vmtest``
service (dynamod_bootmedia.guest) runs its checks, prints one
``DYNAMOD-VMTEST {json}`` line per check on the serial console and powers
off. :func:`boot` reads the console until QEMU exits (a poweroff, a reboot
or a panic all end QEMU: ``-no-reboot``, ``panic=-1``), kills it when the
boot does not finish in time, and returns a :class:`BootResult` that parses
the results, the service state changes svmgr logged, and the boot times.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from dynamod_bootmedia.image.build import Images

QEMU = "qemu-system-x86_64"
RESULT = re.compile(r"DYNAMOD-VMTEST (\{.*\})\s*$")
DONE = re.compile(r"DYNAMOD-VMTEST-DONE (\{.*\})\s*$")
SHUTDOWN = re.compile(r"DYNAMOD-VMTEST-SHUTDOWN (\{.*\})\s*$")
POWEROFF = re.compile(r"DYNAMOD-VMTEST-POWEROFF (\{.*\})\s*$")
KMSG = re.compile(r"^\[\s*(\d+\.\d+)\]\s(.*)$")
TRANSITION = re.compile(r"dynamod-svmgr: ([\w.@:-]+): ([\w-]+) -> ([\w-]+)")
EMERGENCY = re.compile(r"dynamod-init: emergency shell")


class VmError(Exception):
    pass


def qemu_binary() -> str | None:
    return shutil.which(QEMU)


@dataclass
class BootSpec:
    images: Images
    media: str = "disk"  # disk | iso
    root_by: str = "label"  # label | uuid | dev
    read_only: bool = False
    overlay: bool = True
    append: list[str] = field(default_factory=list)
    memory: str = "512"
    snapshot: bool = False
    disk: str | None = None  # boot this copy of the disk image instead
    root: str | None = None  # an explicit root= (overrides root_by)

    def cmdline(self) -> list[str]:
        words = ["console=ttyS0", "panic=-1"]
        if self.media == "disk":
            root = self.root or {
                "label": f"LABEL={self.images.label}",
                "uuid": f"UUID={self.images.uuid}",
                "dev": "/dev/vda",
            }[self.root_by]
            words += [f"root={root}", "ro" if self.read_only else "rw"]
        elif self.media == "iso":
            words.append("dynamod.live")
            if not self.overlay:
                words.append("dynamod.overlay=0")
        else:
            raise VmError(f"unknown media {self.media!r}")
        return words + list(self.append)

    def argv(self, *, interactive: bool) -> list[str]:
        qemu = qemu_binary()
        if qemu is None:
            raise VmError(f"{QEMU} is missing: apt-get install qemu-system-x86")
        img = self.images
        if not img.initramfs or not os.path.exists(img.initramfs):
            raise VmError("no initramfs: run dynamod-vm build")
        argv = [
            qemu, "-machine", "pc,accel=tcg", "-m", str(self.memory), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", img.kernel, "-initrd", img.initramfs, "-append", " ".join(self.cmdline()),
        ]
        argv += ["-serial", "mon:stdio"] if interactive else ["-serial", "stdio", "-monitor", "none"]
        if self.media == "disk":
            disk = self.disk or img.disk
            if not disk or not os.path.exists(disk):
                raise VmError("no disk image: run dynamod-vm build")
            argv += ["-drive", f"file={disk},format=raw,if=virtio" + (",snapshot=on" if self.snapshot else "")]
        else:
            if not img.iso or not os.path.exists(img.iso):
                raise VmError("no ISO image: run dynamod-vm build")
            argv += ["-drive", f"file={img.iso},format=raw,media=cdrom,if=ide,readonly=on"]
        return argv


def run_interactive(spec: BootSpec) -> int:
    """The console on this terminal (ctrl-a x quits QEMU); QEMU's status."""
    argv = spec.argv(interactive=True)
    print(f"dynamod-vm: {shlex.join(argv)}", file=sys.stderr)
    print("dynamod-vm: console on this terminal; ctrl-a x quits QEMU", file=sys.stderr)
    return subprocess.call(argv)


# ------------------------------------------------------------------- result

@dataclass
class BootResult:
    argv: list[str]
    console: str
    exit_code: int | None
    seconds: float
    timed_out: bool = False
    stopped_early: bool = False  # ``until`` matched and QEMU was killed
    log_path: str | None = None

    @property
    def lines(self) -> list[str]:
        return self.console.splitlines()

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        out = {}
        for line in self.lines:
            m = RESULT.search(line)
            if m:
                try:
                    data = json.loads(m.group(1))
                except ValueError:
                    continue
                out[data.get("check", "?")] = data
        return out

    def _json_line(self, pattern: re.Pattern[str]) -> dict[str, Any] | None:
        for line in self.lines:
            m = pattern.search(line)
            if m:
                try:
                    return json.loads(m.group(1))
                except ValueError:
                    return {"unparsable": m.group(1)}
        return None

    @property
    def done(self) -> dict[str, Any] | None:
        return self._json_line(DONE)

    @property
    def shutdown(self) -> dict[str, Any] | None:
        return self._json_line(SHUTDOWN)

    def transitions(self) -> list[tuple[str, str, str]]:
        """(service, old state, new state), in console order."""
        return [m.groups() for m in (TRANSITION.search(ln) for ln in self.lines) if m]  # type: ignore[misc]

    def first(self, service: str, states: tuple[str, ...]) -> int:
        """Index of the first transition of ``service`` into one of
        ``states`` (raises when there is none)."""
        for i, (name, _old, new) in enumerate(self.transitions()):
            if name == service and new in states:
                return i
        raise AssertionError(f"{service} never went to {'/'.join(states)}\n{self.tail()}")

    def kmsg_time(self, text: str) -> float | None:
        """Kernel timestamp of the first kernel-log line containing ``text``."""
        for line in self.lines:
            m = KMSG.match(line.strip())
            if m and text in m.group(2):
                return float(m.group(1))
        return None

    def timings(self) -> dict[str, float | None]:
        ready = (self.results.get("ready") or {}).get("data", {}).get("uptime")
        return {
            "init_started": self.kmsg_time("Run /init as init process"),
            "root_mounted": self.kmsg_time("dynamod-init: root mounted"),
            "switch_root": self.kmsg_time("dynamod-init: switched root"),
            "svmgr_started": self.kmsg_time("dynamod-init: svmgr started"),
            "services_ready": ready,
            "poweroff_requested": (self._json_line(POWEROFF) or {}).get("uptime"),
            "poweroff": self.kmsg_time("dynamod-init: poweroff now"),
            "power_down": self.kmsg_time("reboot: Power down"),
            "wall": round(self.seconds, 2),
        }

    def tail(self, n: int = 60) -> str:
        where = f" (full log: {self.log_path})" if self.log_path else ""
        return f"--- last {n} console lines{where} ---\n" + "\n".join(self.lines[-n:])

    def powered_off(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.stopped_early and (
            "reboot: Power down" in self.console)

    def check(self, name: str) -> dict[str, Any]:
        """The data of a check that passed (raises with the console tail)."""
        r = self.results.get(name)
        if r is None:
            raise AssertionError(f"no result for check {name!r}\n{self.tail()}")
        if not r.get("ok"):
            raise AssertionError(f"check {name} failed: {r.get('error')}\n{self.tail()}")
        return r.get("data", {})


def boot(spec: BootSpec, *, timeout: float = 120.0, log_path: str | None = None,
         echo: bool = False, until: re.Pattern[str] | None = None, until_grace: float = 1.0) -> BootResult:
    """Boot ``spec`` headless and collect the console until QEMU exits, the
    ``until`` pattern appears (then QEMU is killed ``until_grace`` seconds
    later) or ``timeout`` passes (then it is killed: ``timed_out``)."""
    argv = spec.argv(interactive=False)
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    chunks: list[bytes] = []
    pending = b""
    timed_out = stopped = False
    kill_at: float | None = None
    log = open(log_path, "wb") if log_path else None  # noqa: SIM115
    try:
        while True:
            now = time.monotonic()
            if kill_at is not None and now >= kill_at:
                stopped = True
                break
            if now - started > timeout:
                timed_out = True
                break
            wait = min(0.5, timeout - (now - started)) if kill_at is None else max(0.0, kill_at - now)
            ready, _, _ = select.select([fd], [], [], max(0.0, wait))
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
            if log:
                log.write(data)
                log.flush()
            if echo:
                sys.stdout.write(data.decode("utf-8", "replace"))
                sys.stdout.flush()
            if until is not None and kill_at is None:
                pending = (pending + data)[-8192:]
                if until.search(pending.decode("utf-8", "replace")):
                    kill_at = time.monotonic() + until_grace
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            rest = proc.stdout.read()
        except (OSError, ValueError):
            rest = b""
        if rest:
            chunks.append(rest)
            if log:
                log.write(rest)
        proc.wait()
        if log:
            log.close()
    console = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")
    return BootResult(argv, console, None if (timed_out or stopped) else proc.returncode,
                      time.monotonic() - started, timed_out=timed_out, stopped_early=stopped,
                      log_path=log_path)


def format_timings(t: dict[str, float | None]) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}s"

    return (f"kernel → /init {f(t['init_started'])} → root mounted {f(t['root_mounted'])} → "
            f"switch root {f(t['switch_root'])} → svmgr {f(t['svmgr_started'])} → all services ready "
            f"{f(t['services_ready'])}; dynamodctl shutdown {f(t.get('poweroff_requested'))} → poweroff "
            f"{f(t['poweroff'])} → power down {f(t['power_down'])} "
            f"(wall clock {f(t['wall'])})")


def run_test_cli(spec: BootSpec, *, timeout: float, log: str | None, echo: bool) -> int:
    """``dynamod-vm test``: boot with the test runner, print the results."""
    spec.append = [*spec.append, "dynamod.test=cli", "dynamod.test.python=1"]
    print(f"dynamod-vm: booting {spec.media} ({' '.join(spec.cmdline())}), timeout {timeout:g}s",
          file=sys.stderr)
    result = boot(spec, timeout=timeout, log_path=log, echo=echo)
    print("", file=sys.stderr)
    ok = True
    for name, r in result.results.items():
        status = "ok" if r.get("ok") else f"FAILED: {r.get('error')}"
        print(f"dynamod-vm: check {name}: {status} ({r.get('seconds', 0):.2f}s)", file=sys.stderr)
        ok &= bool(r.get("ok"))
    lst = (result.results.get("dynamodctl") or {}).get("data", {}).get("output")
    if lst:
        print("dynamod-vm: dynamodctl list (inside the VM):\n" + lst.rstrip(), file=sys.stderr)
    py = (result.results.get("python") or {}).get("data")
    if py:
        print("dynamod-vm: guest python: " + ", ".join(
            f"{k} {v['wall_ms']} ms (imports {v['imports_ms']} ms)" for k, v in py.items()), file=sys.stderr)
    print(f"dynamod-vm: boot times: {format_timings(result.timings())}", file=sys.stderr)
    if result.timed_out:
        print(f"dynamod-vm: the boot did not finish in {timeout:g}s; QEMU was killed\n{result.tail()}",
              file=sys.stderr)
        return 1
    if not result.done:
        print(f"dynamod-vm: the test runner did not report\n{result.tail()}", file=sys.stderr)
        return 1
    if not result.powered_off():
        print(f"dynamod-vm: the VM did not power off by itself (QEMU exit {result.exit_code})", file=sys.stderr)
        return 1
    print(f"dynamod-vm: {'PASSED' if ok else 'FAILED'}; the VM powered off by itself", file=sys.stderr)
    return 0 if ok else 1
