"""Boot the real images in QEMU (TCG) with dynamod-init as PID 1: a disk
root found by LABEL=, UUID= and /dev/vda, a live root from the ISO (overlay,
and read-only), and a broken root= that must end in the emergency shell.

The images are built once per session into build/vm (or $DYNAMOD_VM_DIR)
and reused across sessions while their inputs are unchanged. Each boot's
console log is kept in build/vm/logs/NAME.log, its boot times in NAME.json.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
from dynamod_bootmedia import vm
from dynamod_bootmedia.image.build import summary
from dynamod_bootmedia.testing import (
    boot_test,
    build_test_images,
    sparse_copy,
    vm_skip_reason,
    which,
)

REASON = vm_skip_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

REPO = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("DYNAMOD_VM_DIR", REPO / "build" / "vm"))
DEMO = ["setup", "database", "cache", "queue", "webapp", "metrics"]
WAIT = "dynamod.test.wait=" + ",".join(DEMO)
UP = ("running", "exited")
TIMES: dict[str, dict] = {}
BUILT: list = []


@pytest.fixture(scope="session")
def images():
    try:
        images = build_test_images(OUT)
        BUILT.append(images)
        return images
    except Exception as exc:  # the reason, not a traceback of the builder
        pytest.fail(f"building the VM images failed: {exc} (log: {OUT / 'build.log'})")


@pytest.fixture(scope="module", autouse=True)
def report_boot_times(request):
    yield
    if not TIMES:
        return
    (OUT / "logs" / "boot-times.json").write_text(json.dumps(TIMES, indent=2))
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        tr.write_line("")
        tr.write_sep("-", "VM boot times (seconds since the kernel started; wall: QEMU start to exit)")
        for name, t in TIMES.items():
            tr.write_line(f"{name:<13} {vm.format_timings(t)}")
        if BUILT:
            tr.write_sep("-", f"VM images in {OUT} (rebuilt this session: {', '.join(BUILT[0].built) or 'none'})")
            tr.write_line(summary(BUILT[0]))


def booted(images, name: str, **kw) -> vm.BootResult:
    result = boot_test(images, name, **kw)
    TIMES[name] = result.timings()
    if result.timed_out:
        pytest.fail(f"the {name} boot did not finish in time; QEMU was killed\n{result.tail()}")
    return result


def assert_phase_a_then_b(r: vm.BootResult) -> None:
    order = ["dynamod-init: root mounted", "dynamod-init: switched root; executing /sbin/dynamod-init",
             "dynamod-init: running (system mode), pid 1", "dynamod-init: svmgr started"]
    at = []
    for text in order:
        assert text in r.console, f"{text!r} missing\n{r.tail()}"
        at.append(r.console.index(text))
    assert at == sorted(at), r.tail()


def assert_powered_off(r: vm.BootResult) -> None:
    assert r.done and r.done.get("ok") is not None, f"the test runner did not finish\n{r.tail()}"
    assert r.powered_off(), f"the VM did not power off by itself (QEMU exit {r.exit_code})\n{r.tail()}"
    assert "dynamod-init: poweroff now" in r.console


def dumpe2fs_state(img: Path) -> str:
    out = subprocess.run([which("dumpe2fs"), "-h", str(img)], capture_output=True, text=True).stdout
    m = re.search(r"^Filesystem state:\s+(.+)$", out, re.M)
    return m.group(1).strip() if m else out


# ------------------------------------------------------------------- disk

@pytest.fixture(scope="module")
def disk_boot(images, tmp_path_factory):
    """The main boot: root=LABEL=..., the demo, dynamodctl inside, then
    dynamodctl shutdown poweroff; on a copy of the disk image."""
    disk = tmp_path_factory.mktemp("disk") / "disk.img"
    sparse_copy(images.disk, disk)
    token = secrets.token_hex(8)
    result = booted(images, "disk-label", root_by="label", disk=str(disk),
                    append=[WAIT, f"dynamod.test.token={token}", "dynamod.test.python=1"])
    return result, disk, token


def test_disk_root_by_label_boots_phase_a_to_phase_b(disk_boot, images):
    r, _, _ = disk_boot
    assert_phase_a_then_b(r)
    assert f"(LABEL={images.label}, ext4, rw) on /newroot" in r.console
    root = r.check("root")
    assert (root["source"], root["fstype"], root["writable"]) == ("/dev/vda", "ext4", True)


def test_demo_services_start_in_dependency_order(disk_boot):
    r, _, _ = disk_boot
    ready = r.check("ready")
    for name in DEMO:
        assert ready["states"][name] in UP, ready["states"]
    first = {name: r.first(name, UP) for name in DEMO}
    assert first["setup"] < first["database"] < first["cache"] < first["webapp"]
    assert first["database"] < first["queue"] < first["webapp"]


def test_dynamodctl_list_inside_shows_them_running(disk_boot):
    r, _, _ = disk_boot
    out = r.check("dynamodctl")["output"]
    rows = {ln.split()[0].rstrip("*"): ln.split()[1] for ln in out.splitlines()[1:] if ln.strip() and
            not ln.startswith(("*", " ")) and len(ln.split()) > 1 and ln.split()[1] != "services:"}
    for name in ("database", "cache", "queue", "webapp", "metrics"):
        assert rows.get(name) == "running", out
    assert rows.get("setup") == "exited", out


def test_shutdown_stops_in_reverse_order_and_powers_off(disk_boot):
    r, _, _ = disk_boot
    assert_powered_off(r)
    assert "dynamod-svmgr: shutdown (poweroff): stopping all services" in r.console
    stopped = {name: r.first(name, ("stopped",)) for name in DEMO}
    assert stopped["webapp"] < stopped["cache"] < stopped["database"] < stopped["setup"]
    assert stopped["webapp"] < stopped["queue"] < stopped["database"]
    assert stopped["webapp"] < stopped["metrics"]


def test_guest_python_start_up_and_imports_are_measured(disk_boot):
    r, _, _ = disk_boot
    py = r.check("python")
    for what in ("startup", "svmgr", "ctl"):
        assert py[what]["wall_ms"] > 0 and py[what]["imports_ms"] > 0, py


def test_disk_is_clean_and_keeps_what_a_service_wrote(disk_boot):
    r, disk, token = disk_boot
    assert r.check("persist")["token"] == token
    assert dumpe2fs_state(disk) == "clean"
    out = subprocess.run([which("debugfs"), "-R", "cat /var/lib/vmtest/token", str(disk)],
                         capture_output=True, text=True)
    assert out.stdout.strip() == token, out.stderr


@pytest.mark.parametrize("root_by", ["uuid", "dev"])
def test_disk_root_by_uuid_and_device(images, root_by):
    r = booted(images, f"disk-{root_by}", root_by=root_by, snapshot=True, append=[WAIT])
    expect = f"UUID={images.uuid}" if root_by == "uuid" else "/dev/vda"
    assert f"/dev/vda ({expect}, ext4, rw) on /newroot" in r.console, r.tail()
    assert_phase_a_then_b(r)
    r.check("ready")
    assert_powered_off(r)


# ------------------------------------------------------------------- live

def test_live_iso_overlay_root_is_writable(images):
    r = booted(images, "live-overlay", media="iso", append=[WAIT])
    assert_phase_a_then_b(r)
    assert "overlay (writable layer on tmpfs /run/dynamod/live/rw) on /newroot" in r.console
    root = r.check("root")
    assert root["fstype"] == "overlay" and root["writable"], root
    for m in ("/run/dynamod/live/medium", "/run/dynamod/live/rootfs", "/run/dynamod/live/rw"):
        assert m in root["mounts"]
    for name in DEMO:
        assert r.check("ready")["states"][name] in UP
    assert_powered_off(r)


def test_live_iso_without_overlay_is_read_only(images):
    r = booted(images, "live-ro", media="iso", overlay=False)
    root = r.check("root")
    assert root["fstype"] == "squashfs" and not root["writable"], root
    assert root["error"] == "Read-only file system"
    assert_powered_off(r)


# ----------------------------------------------------------------- broken

def test_broken_root_ends_in_the_emergency_shell_with_the_reason(images):
    r = booted(images, "broken-root", root="LABEL=no-such-root", snapshot=True, test=False,
               until=vm.EMERGENCY, timeout=90)
    assert r.stopped_early, f"no emergency shell\n{r.tail()}"
    assert "Phase A failed: mounting the root failed: root device LABEL=no-such-root not found" in r.console
    assert f'LABEL="{images.label}"' in r.console  # what is there instead
    assert "dynamod-init: emergency shell" in r.console


def test_emergency_flag_on_the_command_line_starts_the_shell_before_svmgr(images):
    r = booted(images, "emergency-flag", snapshot=True, test=False, append=["dynamod.emergency=1"],
               until=vm.EMERGENCY, timeout=90)
    assert r.stopped_early, f"no emergency shell\n{r.tail()}"
    # Phase A and B ran; the shell comes instead of svmgr.
    assert "dynamod-init: running (system mode), pid 1" in r.console, r.tail()
    assert "EMERGENCY: dynamod.emergency=1 on the kernel command line" in r.console, r.tail()
    assert "svmgr started" not in r.console[: r.console.index("EMERGENCY: dynamod.emergency=1")]
