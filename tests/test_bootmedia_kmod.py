"""Kernel module closure (modules.dep), the carried subset, and loading
order, against fake module trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dynamod_bootmedia import kmod

DEP = """\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/scsi/sr_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko kernel/drivers/cdrom/cdrom.ko
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/cdrom/cdrom.ko:
kernel/fs/isofs/isofs.ko.xz: kernel/drivers/cdrom/cdrom.ko
"""


@pytest.fixture
def moddir(tmp_path: Path) -> Path:
    d = tmp_path / "6.1.0-test"
    d.mkdir()
    (d / "modules.dep").write_text(DEP)
    (d / "modules.builtin").write_text("kernel/fs/overlayfs/overlay.ko\nkernel/drivers/block/loop.ko\n")
    for line in DEP.splitlines():
        path = d / line.split(":")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x7fELF fake " + path.name.encode())
    return d


def test_module_names():
    assert kmod.module_name("kernel/fs/ext4/ext4.ko") == "ext4"
    assert kmod.module_name("kernel/crypto/crc32c-intel.ko") == "crc32c_intel"
    assert kmod.module_name("isofs.ko.xz") == "isofs"
    assert kmod.module_name("a/sr_mod.ko.zst") == "sr_mod"


def test_parse_modules_dep():
    deps = kmod.parse_modules_dep("# comment\n\na.ko: b.ko c.ko\nb.ko:\nbroken line\n")
    assert deps == {"a.ko": ["b.ko", "c.ko"], "b.ko": []}


def test_closure_loads_dependencies_first_and_each_once(moddir: Path):
    index = kmod.ModuleIndex.load(str(moddir))
    paths, missing = index.closure(["virtio_pci", "virtio_blk", "ext4", "sr_mod", "isofs"])
    names = [kmod.module_name(p) for p in paths]
    assert missing == []
    assert len(names) == len(set(names))
    for mod, deps in [("virtio_pci", ["virtio", "virtio_ring", "virtio_pci_legacy_dev"]),
                      ("virtio_blk", ["virtio", "virtio_ring"]),
                      ("ext4", ["crc16", "mbcache", "jbd2"]),
                      ("sr_mod", ["scsi_mod", "scsi_common", "cdrom"]),
                      ("scsi_mod", ["scsi_common"]),
                      ("isofs", ["cdrom"])]:
        for dep in deps:
            assert names.index(dep) < names.index(mod), (dep, mod, names)


def test_closure_skips_builtin_and_reports_missing(moddir: Path):
    index = kmod.ModuleIndex.load(str(moddir))
    paths, missing = index.closure(["overlay", "loop", "nosuchmod", "crc32c-generic"])
    assert [kmod.module_name(p) for p in paths] == ["crc32c_generic"]
    assert missing == ["nosuchmod"]


def test_write_subset_copies_files_and_a_restricted_modules_dep(moddir: Path, tmp_path: Path):
    index = kmod.ModuleIndex.load(str(moddir))
    paths, _ = index.closure(["ext4"])
    dest = tmp_path / "out"
    size = kmod.write_subset(index, str(moddir), paths, str(dest))
    assert size > 0
    written = kmod.parse_modules_dep((dest / "modules.dep").read_text())
    assert set(written) == set(paths)
    assert written["kernel/fs/ext4/ext4.ko"] == ["kernel/lib/crc16.ko", "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko"]
    assert (dest / "kernel/fs/jbd2/jbd2.ko").exists()
    assert not (dest / "kernel/drivers/scsi").exists()
    assert (dest / "modules.builtin").read_text().startswith("kernel/fs/overlayfs")
    # a dependency outside the subset is dropped from the written line
    sub = tmp_path / "sub"
    kmod.write_subset(index, str(moddir), ["kernel/drivers/scsi/sr_mod.ko"], str(sub))
    assert (sub / "modules.dep").read_text() == "kernel/drivers/scsi/sr_mod.ko:\n"


def test_load_modules_in_order_skipping_loaded_ones(moddir: Path, tmp_path: Path):
    sysmod = tmp_path / "sys-module"
    (sysmod / "virtio").mkdir(parents=True)
    (sysmod / "virtio" / "initstate").write_text("live\n")
    (sysmod / "virtio_ring").mkdir()  # built in with parameters: no initstate
    loaded_files: list[str] = []
    said: list[str] = []

    def loader(path: str) -> None:
        if path.endswith("jbd2.ko"):
            raise OSError(22, "Invalid argument")
        loaded_files.append(os.path.relpath(path, moddir))

    got = kmod.load_modules(["virtio_blk", "ext4", "ghost"], str(moddir), log=said.append,
                            loader=loader, sys_module=str(sysmod))
    assert got == ["virtio_ring", "virtio_blk", "crc16", "mbcache", "ext4"]
    assert loaded_files[0] == "kernel/drivers/virtio/virtio_ring.ko"
    assert any("ghost" in m and "modules.dep" in m for m in said)
    assert any("jbd2" in m and "Invalid argument" in m for m in said)


def test_boot_modules_depend_on_the_boot_path():
    disk = kmod.boot_modules(False, ("ext4",))
    assert disk == ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]
    assert kmod.boot_modules(False, ("xfs",)) == ["virtio_pci", "virtio_blk", "xfs"]
    assert kmod.boot_modules(False, ("iso9660",))[-1] == "isofs"
    live = kmod.boot_modules(True, ("ext4",), ("9p",))
    for m in ("ata_piix", "sr_mod", "loop", "squashfs", "overlay", "isofs", "udf", "9p"):
        assert m in live
    assert "ext4" not in live
    assert set(kmod.MEDIA_MODULES) >= set(disk) | set(kmod.boot_modules(True, ()))
