"""Root device resolution against fake /dev and /sys trees: the by-* links,
the blkid fallback, and the built-in superblock / partition table probe."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from dynamod_bootmedia import blockdev
from dynamod_bootmedia.blockdev import DevTree


def make_block(tree: Path, name: str, data: bytes = b"", *, size: int = 2048, parent: str | None = None,
               partition: int | None = None, devno: str = "253:0") -> Path:
    """A fake block device: /sys/class/block/NAME (a link into devices/, a
    partition below its disk) and /dev/NAME as a plain file with ``data``."""
    sys_dev = tree / "sys" / "devices" / "virtual" / "block"
    node_dir = sys_dev / parent / name if parent else sys_dev / name
    node_dir.mkdir(parents=True, exist_ok=True)
    (node_dir / "size").write_text(f"{size}\n")
    (node_dir / "dev").write_text(devno + "\n")
    if partition is not None:
        (node_dir / "partition").write_text(f"{partition}\n")
    cls = tree / "sys" / "class" / "block"
    cls.mkdir(parents=True, exist_ok=True)
    link = cls / name
    if not link.exists():
        link.symlink_to(os.path.relpath(node_dir, cls))
    byn = tree / "sys" / "dev" / "block"
    byn.mkdir(parents=True, exist_ok=True)
    if not (byn / devno).exists():
        (byn / devno).symlink_to(os.path.relpath(node_dir, byn))
    dev = tree / "dev" / name
    dev.parent.mkdir(parents=True, exist_ok=True)
    dev.write_bytes(data)
    return dev


def ext4_superblock(label: str, fs_uuid: uuid.UUID) -> bytes:
    img = bytearray(4096)
    sb = 1024
    img[sb + 56 : sb + 58] = b"\x53\xef"
    struct.pack_into("<I", img, sb + 96, 0x40 | 0x200)  # extents, flex_bg: ext4
    img[sb + 104 : sb + 120] = fs_uuid.bytes
    img[sb + 120 : sb + 120 + len(label)] = label.encode()
    return bytes(img)


def iso9660(label: str) -> bytes:
    img = bytearray(0x8000 + 2048)
    pvd = 0x8000
    img[pvd] = 1
    img[pvd + 1 : pvd + 6] = b"CD001"
    img[pvd + 40 : pvd + 72] = label.ljust(32).encode()
    img[pvd + 813 : pvd + 830] = b"2026112203441800\x00"
    return bytes(img)


def gpt_disk(part_guids: list[uuid.UUID]) -> bytes:
    img = bytearray(512 * 40)
    img[510:512] = b"\x55\xaa"
    img[446 + 4] = 0xEE  # protective MBR
    hdr = 512
    img[hdr : hdr + 8] = b"EFI PART"
    struct.pack_into("<QII", img, hdr + 72, 2, 128, 128)
    for i, g in enumerate(part_guids):
        e = 1024 + i * 128
        img[e : e + 16] = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le
        img[e + 16 : e + 32] = g.bytes_le
    return bytes(img)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "dev").mkdir()
    (tmp_path / "sys").mkdir()
    return tmp_path


def devtree(tree: Path, **kw: object) -> DevTree:
    return DevTree(dev=str(tree / "dev"), sys=str(tree / "sys"), **kw)  # type: ignore[arg-type]


def test_split_spec():
    assert blockdev.split_spec("LABEL=a=b") == ("LABEL", "a=b")
    assert blockdev.split_spec("uuid=x") == ("UUID", "x")
    assert blockdev.split_spec("/dev/vda1") == ("", "/dev/vda1")


def test_dev_names_bare_names_and_major_minor(tree: Path):
    make_block(tree, "vda", devno="253:0")
    make_block(tree, "vda1", parent="vda", partition=1, devno="253:1")
    t = devtree(tree)
    assert blockdev.resolve("/dev/vda", t) == str(tree / "dev" / "vda")
    assert blockdev.resolve("vda1", t) == str(tree / "dev" / "vda1")
    assert blockdev.resolve("253:1", t) == str(tree / "dev" / "vda1")
    assert blockdev.resolve("/dev/vdb", t) is None
    assert blockdev.resolve("9:9", t) is None


def test_by_links_win(tree: Path):
    make_block(tree, "vda")
    links = tree / "dev" / "disk"
    for kind, name in (("by-label", "my\\x20root"), ("by-uuid", "c0ffee00-1111-2222-3333-444455556666"),
                       ("by-partuuid", "abcdef01-01")):
        (links / kind).mkdir(parents=True)
        (links / kind / name).symlink_to("../../vda")
    t = devtree(tree, probe=False)
    vda = os.path.realpath(tree / "dev" / "vda")
    assert blockdev.resolve("LABEL=my root", t) == vda
    assert blockdev.resolve("UUID=C0FFEE00-1111-2222-3333-444455556666", t) == vda
    assert blockdev.resolve("PARTUUID=abcdef01-01", t) == vda
    assert blockdev.resolve("LABEL=other", t) is None


def test_blkid_fallback(tree: Path):
    make_block(tree, "vda")
    make_block(tree, "vdb", devno="253:16")
    seen: list[list[str]] = []

    def fake_blkid(devices: list[str]) -> str:
        seen.append(devices)
        return "\n".join([
            f'{devices[0]}: LABEL="data" UUID="1111" TYPE="ext4"',
            f'{devices[1]}: LABEL="root \\"fs\\"" UUID="AbCd-0001" PARTUUID="5e-01" TYPE="ext4"',
        ])

    t = devtree(tree, blkid=fake_blkid, probe=False)
    vdb = str(tree / "dev" / "vdb")
    assert blockdev.resolve('LABEL=root "fs"', t) == vdb
    assert blockdev.resolve("UUID=abcd-0001", t) == vdb
    assert blockdev.resolve("PARTUUID=5E-01", t) == vdb
    assert blockdev.resolve("LABEL=nope", t) is None
    assert sorted(seen[0]) == sorted([str(tree / "dev" / "vda"), vdb])


def test_parse_blkid_busybox_and_util_linux_styles():
    out = blockdev.parse_blkid(
        '/dev/vda: LABEL="dynaroot" UUID="823b1d1d-38b1-5ea0-904c-76b38b53aea2" BLOCK_SIZE="4096" TYPE="ext4"\n'
        '/dev/sr0: UUID="2026-11-22-03-44-18-00" LABEL="DYNAISO" TYPE="iso9660"\n'
        "garbage\n"
    )
    assert out["/dev/vda"]["LABEL"] == "dynaroot"
    assert out["/dev/sr0"]["TYPE"] == "iso9660"
    assert len(out) == 2


def test_builtin_probe_ext4_and_iso(tree: Path):
    fs_uuid = uuid.uuid4()
    make_block(tree, "vda", ext4_superblock("dynaroot", fs_uuid))
    make_block(tree, "sr0", iso9660("DYNAISO"), devno="11:0")
    make_block(tree, "vdb", b"\0" * 4096, devno="253:16")
    t = devtree(tree)  # no blkid at all
    assert blockdev.resolve("LABEL=dynaroot", t) == str(tree / "dev" / "vda")
    assert blockdev.resolve(f"UUID={str(fs_uuid).upper()}", t) == str(tree / "dev" / "vda")
    assert blockdev.resolve("LABEL=DYNAISO", t) == str(tree / "dev" / "sr0")
    assert blockdev.resolve("UUID=2026-11-22-03-44-18-00", t) == str(tree / "dev" / "sr0")
    desc = blockdev.describe_devices(t)
    assert 'vda: LABEL="dynaroot" TYPE="ext4"' in desc and "sr0:" in desc and "vdb" in desc


def test_builtin_probe_gpt_and_mbr_partuuid(tree: Path):
    guids = [uuid.uuid4(), uuid.uuid4()]
    make_block(tree, "vda", gpt_disk(guids), devno="253:0")
    make_block(tree, "vda1", b"", parent="vda", partition=1, devno="253:1")
    make_block(tree, "vda2", b"", parent="vda", partition=2, devno="253:2")
    mbr = bytearray(512)
    mbr[510:512] = b"\x55\xaa"
    struct.pack_into("<I", mbr, 440, 0x5EC0DE01)
    mbr[446 + 16 + 4] = 0x83  # only partition 2 is in use
    make_block(tree, "vdb", bytes(mbr), devno="253:16")
    make_block(tree, "vdb2", b"", parent="vdb", partition=2, devno="253:18")
    t = devtree(tree)
    assert blockdev.resolve(f"PARTUUID={guids[1]}", t) == str(tree / "dev" / "vda2")
    assert blockdev.resolve(f"PARTUUID={str(guids[0]).upper()}", t) == str(tree / "dev" / "vda1")
    assert blockdev.resolve("PARTUUID=5ec0de01-02", t) == str(tree / "dev" / "vdb2")
    assert blockdev.partition_uuids(str(tree / "dev" / "vdb")) == {2: "5ec0de01-02"}


def test_devices_without_media_or_ramdisks_are_skipped(tree: Path):
    make_block(tree, "sr0", b"", size=0, devno="11:0")
    make_block(tree, "ram0", b"", devno="1:0")
    make_block(tree, "vda", b"", devno="253:0")
    assert blockdev.block_devices(devtree(tree)) == ["vda"]


def test_missing_node_is_created_from_sysfs(tree: Path):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    make_block(tree, "vdc", b"", devno="7:0")
    (tree / "dev" / "vdc").unlink()
    node = blockdev.device_node(devtree(tree), "vdc")
    assert node == str(tree / "dev" / "vdc")
    st = os.stat(node)
    assert os.major(st.st_rdev) == 7


@pytest.mark.skipif(shutil.which("mke2fs") is None, reason="needs mke2fs (e2fsprogs)")
def test_probe_reads_a_real_mke2fs_image(tmp_path: Path):
    img = tmp_path / "fs.img"
    fs_uuid = str(uuid.uuid4())
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "real-label", "-U", fs_uuid, str(img), "4M"],
                   check=True)
    tags = blockdev.probe_superblock(str(img))
    assert tags == {"TYPE": "ext4", "LABEL": "real-label", "UUID": fs_uuid}
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", str(img), "4M"], check=True)
    assert blockdev.probe_superblock(str(img))["TYPE"] == "ext2"
