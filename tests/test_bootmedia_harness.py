"""The VM harness without a VM: QEMU command lines, parsing a console log,
and the guest test runner's pluggable checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dynamod_bootmedia import guest, vm
from dynamod_bootmedia.image.build import Images


@pytest.fixture
def images(tmp_path: Path) -> Images:
    for name in ("vmlinuz", "initramfs.img", "disk.img", "root.iso"):
        (tmp_path / name).write_bytes(b"x")
    return Images(out=str(tmp_path), kernel=str(tmp_path / "vmlinuz"), kernel_version="6.1",
                  initramfs=str(tmp_path / "initramfs.img"), disk=str(tmp_path / "disk.img"),
                  iso=str(tmp_path / "root.iso"), label="dynaroot", uuid="1234-abcd")


def test_kernel_command_lines(images: Images):
    assert vm.BootSpec(images).cmdline() == ["console=ttyS0", "panic=-1", "root=LABEL=dynaroot", "rw"]
    assert "root=UUID=1234-abcd" in vm.BootSpec(images, root_by="uuid").cmdline()
    assert "root=/dev/vda" in vm.BootSpec(images, root_by="dev", read_only=True).cmdline()
    assert "ro" in vm.BootSpec(images, read_only=True).cmdline()
    assert vm.BootSpec(images, root="LABEL=broken").cmdline()[2] == "root=LABEL=broken"
    live = vm.BootSpec(images, media="iso", overlay=False, append=["dynamod.test=x"]).cmdline()
    assert live == ["console=ttyS0", "panic=-1", "dynamod.live", "dynamod.overlay=0", "dynamod.test=x"]


def test_qemu_argv(images: Images, monkeypatch):
    monkeypatch.setattr(vm, "qemu_binary", lambda: "/usr/bin/qemu-system-x86_64")
    argv = vm.BootSpec(images, snapshot=True).argv(interactive=False)
    joined = " ".join(argv)
    for part in ("accel=tcg", "-no-reboot", "-nodefaults", "-serial stdio", "-monitor none", "-smp 1",
                 f"-kernel {images.kernel}", f"-initrd {images.initramfs}",
                 f"file={images.disk},format=raw,if=virtio,snapshot=on"):
        assert part in joined
    assert argv[argv.index("-append") + 1].startswith("console=ttyS0 panic=-1 root=LABEL=dynaroot")
    iso = " ".join(vm.BootSpec(images, media="iso").argv(interactive=True))
    assert "media=cdrom" in iso and "-serial mon:stdio" in iso and "disk.img" not in iso
    monkeypatch.setattr(vm, "qemu_binary", lambda: None)
    with pytest.raises(vm.VmError, match="qemu-system-x86"):
        vm.BootSpec(images).argv(interactive=False)


CONSOLE = """\
[    2.134840] Run /init as init process
[    5.001318] dynamod-init: loaded 11 kernel modules in 0.43s (virtio_pci, ext4)
[    5.139656] dynamod-init: root mounted in 0.57s: /dev/vda (LABEL=dynaroot, ext4, rw) on /newroot
[    5.200214] dynamod-init: switched root; executing /sbin/dynamod-init
[    6.426136] dynamod-init: svmgr started (pid 84), 5870 ms after exec
04:07:29 dynamod-svmgr: setup: pending -> starting
04:07:29 dynamod-svmgr: setup: starting -> exited
04:07:29 dynamod-svmgr: database: waiting-ready -> running
DYNAMOD-VMTEST {"check": "ready", "ok": true, "error": "", "data": {"uptime": 10.39}, "seconds": 1.0}
DYNAMOD-VMTEST {"check": "root", "ok": false, "error": "AssertionError: nope", "data": {}, "seconds": 0.1}
DYNAMOD-VMTEST {"check": "broken
DYNAMOD-VMTEST-DONE {"ok": false, "checks": 2, "uptime": 12.5}
DYNAMOD-VMTEST-POWEROFF {"uptime": 12.75}
04:07:40 dynamod-svmgr: database: stopping -> stopped
04:07:40 dynamod-svmgr: setup: stopping -> stopped
[   19.842000] dynamod-init: poweroff now
[   19.850000] reboot: Power down
"""


def test_console_parsing():
    r = vm.BootResult(argv=[], console=CONSOLE, exit_code=0, seconds=23.3)
    assert set(r.results) == {"ready", "root"}
    assert r.check("ready") == {"uptime": 10.39}
    with pytest.raises(AssertionError, match="check root failed: AssertionError: nope"):
        r.check("root")
    with pytest.raises(AssertionError, match="no result for check 'gone'"):
        r.check("gone")
    assert r.done == {"ok": False, "checks": 2, "uptime": 12.5}
    assert r.transitions()[1] == ("setup", "starting", "exited")
    assert r.first("setup", ("exited",)) < r.first("database", ("running",))
    assert r.first("database", ("stopped",)) < r.first("setup", ("stopped",))
    with pytest.raises(AssertionError, match="webapp never went to running"):
        r.first("webapp", ("running",))
    t = r.timings()
    assert t["init_started"] == pytest.approx(2.13484)
    assert t["svmgr_started"] == pytest.approx(6.426136)
    assert t["services_ready"] == 10.39 and t["poweroff"] == 19.842 and t["power_down"] == 19.85
    assert t["poweroff_requested"] == 12.75
    assert r.powered_off()
    assert "svmgr 6.43s" in vm.format_timings(t)
    assert not vm.BootResult(argv=[], console=CONSOLE, exit_code=None, seconds=1, timed_out=True).powered_off()


def test_guest_loads_extra_check_modules(tmp_path: Path):
    (tmp_path / "isolation.py").write_text(
        "def check_cgroups(ctx):\n    return {'controllers': ['memory']}\n"
        "def helper():\n    pass\n"
    )
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    checks = dict(guest.extra_checks(str(tmp_path)))
    assert set(checks) == {"isolation.cgroups", "broken"}
    assert checks["isolation.cgroups"]({}) == {"controllers": ["memory"]}
    with pytest.raises(AssertionError, match="boom"):
        checks["broken"]({})


def test_guest_run_reports_every_check(tmp_path: Path, monkeypatch):
    lines: list[str] = []

    class FakeConsole(guest.Console):
        def __init__(self) -> None:
            self.fd = -1

        def line(self, text: str) -> None:
            lines.append(text)

    def failing(ctx):
        raise AssertionError("the root is not writable")

    monkeypatch.setattr(guest, "BUILTIN", [("ready", lambda ctx: {"uptime": 1.0}), ("root", failing)])
    monkeypatch.setattr(guest, "extra_checks", lambda: [("plugin.x", lambda ctx: {"saw": ctx["ready"]})])
    monkeypatch.setattr(guest, "uptime", lambda: 5.0)
    assert guest.run(FakeConsole(), {"dynamod.test": "unit"}) is False
    parsed = [json.loads(ln.split(" ", 1)[1]) for ln in lines]
    assert [p.get("check") for p in parsed[:3]] == ["ready", "root", "plugin.x"]
    assert parsed[1]["error"] == "AssertionError: the root is not writable"
    assert parsed[2]["data"] == {"saw": {"uptime": 1.0}}
    assert lines[-1].startswith("DYNAMOD-VMTEST-DONE") and parsed[-1]["ok"] is False
    r = vm.BootResult(argv=[], console="\n".join(lines), exit_code=0, seconds=1)
    assert set(r.results) == {"ready", "root", "plugin.x"}


def test_sparse_copy_keeps_holes_and_content(tmp_path: Path):
    from dynamod_bootmedia.testing import sparse_copy

    src = tmp_path / "src.img"
    with open(src, "wb") as f:
        f.truncate(64 << 20)
        f.seek(1 << 20)
        f.write(b"superblock")
        f.seek(40 << 20)
        f.write(b"x" * 5000)
    dst = tmp_path / "dst.img"
    sparse_copy(src, dst)
    assert dst.stat().st_size == src.stat().st_size
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_blocks * 512 < 4 << 20
