"""Finding a block device by the kernel's names for it.

``/dev/NAME`` (or a bare ``NAME``, or ``MAJOR:MINOR``), ``UUID=``,
``PARTUUID=``, ``LABEL=`` and ``PARTLABEL=`` are looked up in this order:

1. the ``/dev/disk/by-*`` links (udev, or an mdev.conf that makes them);
2. ``blkid`` (busybox's or util-linux's) on every block device;
3. a built-in probe reading the superblock of ext2/3/4 and ISO 9660 file
   systems (UUID, label) and the GPT / MBR partition table (PARTUUID), so
   that a busybox without blkid, or one whose blkid knows no PARTUUID,
   still finds the root.

Everything takes a :class:`DevTree` that says where /dev and /sys are, so
the unit tests run against a fake tree.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

KEYS = ("UUID", "PARTUUID", "LABEL", "PARTLABEL")
BY_DIR = {"UUID": "by-uuid", "PARTUUID": "by-partuuid", "LABEL": "by-label", "PARTLABEL": "by-partlabel"}
SKIP_PREFIXES = ("ram", "zram", "fd")


@dataclass
class DevTree:
    dev: str = "/dev"
    sys: str = "/sys"
    # Returns blkid's output for the given devices ("" when unavailable).
    blkid: Callable[[list[str]], str] | None = None
    probe: bool = True  # use the built-in superblock probe
    cache: dict[str, dict[str, str]] = field(default_factory=dict)


def split_spec(spec: str) -> tuple[str, str]:
    """``LABEL=root`` → ("LABEL", "root"); ``/dev/vda`` → ("", "/dev/vda")."""
    key, sep, value = spec.partition("=")
    if sep and key.upper() in KEYS:
        return key.upper(), value
    return "", spec


def natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def block_devices(tree: DevTree) -> list[str]:
    """Names of the block devices that have media (size > 0), disks before
    their partitions, in natural order."""
    base = os.path.join(tree.sys, "class", "block")
    try:
        names = os.listdir(base)
    except OSError:
        return []
    out = []
    for name in names:
        if name.startswith(SKIP_PREFIXES):
            continue
        try:
            with open(os.path.join(base, name, "size"), encoding="ascii") as f:
                if int(f.read().strip() or 0) <= 0:
                    continue
        except (OSError, ValueError):
            continue
        out.append(name)
    return sorted(out, key=natural_key)


def device_node(tree: DevTree, name: str) -> str | None:
    """/dev/NAME, created from /sys/class/block/NAME/dev when devtmpfs has
    not made it (no devtmpfs, or mdev not run)."""
    path = os.path.join(tree.dev, name)
    if os.path.exists(path):
        return path
    try:
        with open(os.path.join(tree.sys, "class", "block", name, "dev"), encoding="ascii") as f:
            major, minor = (int(x) for x in f.read().strip().split(":"))
    except (OSError, ValueError):
        return None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mknod(path, 0o600 | stat.S_IFBLK, os.makedev(major, minor))
    except OSError:
        return None
    return path


def parse_blkid(text: str) -> dict[str, dict[str, str]]:
    """``/dev/vda: LABEL="x" UUID="y" TYPE="ext4"`` lines → {dev: {KEY: value}}."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        dev, sep, rest = line.partition(":")
        if not sep or not dev.startswith("/"):
            continue
        tags: dict[str, str] = {}
        for m in re.finditer(r'([A-Z_]+)="((?:[^"\\]|\\.)*)"', rest):
            tags[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2))
        out[dev.strip()] = tags
    return out


def run_blkid(devices: list[str]) -> str:
    """blkid's output for ``devices`` ("" when there is no blkid)."""
    from dynamod_bootmedia import spawn

    exe = spawn.find("blkid")
    if exe is None:
        return ""
    _status, out = spawn.run([exe, *devices], timeout=10)
    return out


# ---------------------------------------------------------------- probing

def _read(path: str, offset: int, size: int) -> bytes:
    try:
        with open(path, "rb", buffering=0) as f:
            f.seek(offset)
            return f.read(size)
    except OSError:
        return b""


def format_guid(raw: bytes) -> str:
    """GPT's mixed-endian GUID bytes → the usual lower-case text form."""
    a, b, c = struct.unpack_from("<IHH", raw)
    d = raw[8:10].hex()
    e = raw[10:16].hex()
    return f"{a:08x}-{b:04x}-{c:04x}-{d}-{e}"


def format_uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def probe_superblock(path: str) -> dict[str, str]:
    """UUID / LABEL / TYPE of an ext2/3/4, ISO 9660 or squashfs file system."""
    head = _read(path, 0, 1024 + 1024)
    tags: dict[str, str] = {}
    if len(head) >= 2048 and head[1024 + 56 : 1024 + 58] == b"\x53\xef":
        sb = head[1024:]
        uuid = sb[104:120]
        label = sb[120:136].split(b"\0", 1)[0].decode("utf-8", "replace")
        compat, incompat = struct.unpack_from("<I", sb, 92)[0], struct.unpack_from("<I", sb, 96)[0]
        tags["TYPE"] = "ext4" if incompat & 0x2C0 else ("ext3" if compat & 0x4 else "ext2")
        if any(uuid):
            tags["UUID"] = format_uuid(uuid)
        if label:
            tags["LABEL"] = label
        return tags
    if head[:4] == b"hsqs":
        return {"TYPE": "squashfs"}
    pvd = _read(path, 0x8000, 2048)
    if len(pvd) == 2048 and pvd[1:6] == b"CD001" and pvd[0] == 1:
        tags["TYPE"] = "iso9660"
        label = pvd[40:72].decode("ascii", "replace").strip()
        if label:
            tags["LABEL"] = label
        created = pvd[813:829].decode("ascii", "replace")
        if created.isdigit() and created.strip("0"):
            d = created
            tags["UUID"] = f"{d[0:4]}-{d[4:6]}-{d[6:8]}-{d[8:10]}-{d[10:12]}-{d[12:14]}-{d[14:16]}"
    return tags


def partition_uuids(disk_path: str, sector: int = 512) -> dict[int, str]:
    """{partition number: PARTUUID} from a GPT (preferred) or MBR."""
    mbr = _read(disk_path, 0, 512)
    if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
        return {}
    gpt = _read(disk_path, sector, 92)
    if gpt[:8] == b"EFI PART":
        entries_lba, count, size = struct.unpack_from("<QII", gpt, 72)
        count = min(count, 256)
        table = _read(disk_path, entries_lba * sector, count * size)
        out: dict[int, str] = {}
        for i in range(count):
            entry = table[i * size : i * size + size]
            if len(entry) < 32 or not any(entry[:16]):
                continue
            out[i + 1] = format_guid(entry[16:32])
        return out
    signature = struct.unpack_from("<I", mbr, 440)[0]
    if not signature:
        return {}
    out = {}
    for i in range(4):
        if mbr[446 + i * 16 + 4] != 0:
            out[i + 1] = f"{signature:08x}-{i + 1:02x}"
    return out


def _partition_info(tree: DevTree, name: str) -> tuple[str, int] | None:
    """(parent disk name, partition number) for a partition, else None."""
    base = os.path.join(tree.sys, "class", "block", name)
    try:
        with open(os.path.join(base, "partition"), encoding="ascii") as f:
            number = int(f.read().strip())
    except (OSError, ValueError):
        return None
    parent = os.path.basename(os.path.dirname(os.path.realpath(base)))
    return parent, number


def probe(tree: DevTree, name: str) -> dict[str, str]:
    """The tags of /dev/NAME from the built-in probe (cached)."""
    if name in tree.cache:
        return tree.cache[name]
    path = device_node(tree, name)
    tags = probe_superblock(path) if path else {}
    part = _partition_info(tree, name) if path else None
    if part is not None:
        disk = device_node(tree, part[0])
        if disk:
            uuid = partition_uuids(disk).get(part[1])
            if uuid:
                tags["PARTUUID"] = uuid
    tree.cache[name] = tags
    return tags


# ---------------------------------------------------------------- resolving

def _matches(key: str, want: str, have: str | None) -> bool:
    if have is None:
        return False
    if key in ("UUID", "PARTUUID"):
        return have.lower() == want.lower()
    return have == want


def _by_link(tree: DevTree, key: str, value: str) -> str | None:
    folder = os.path.join(tree.dev, "disk", BY_DIR[key])
    candidates = [value]
    if key in ("UUID", "PARTUUID"):
        candidates += [value.lower(), value.upper()]
    # udev escapes unsafe characters in labels: "my root" → "my\x20root"
    candidates.append("".join(c if c.isalnum() or c in "#+-.:=@_" else f"\\x{ord(c):02x}" for c in value))
    for cand in candidates:
        link = os.path.join(folder, cand)
        if os.path.exists(link):
            return os.path.realpath(link)
    return None


def resolve(spec: str, tree: DevTree | None = None) -> str | None:
    """The device node for a root= / dynamod.media= value, or None when no
    device matches (yet)."""
    tree = tree or DevTree()
    key, value = split_spec(spec)
    if not value:
        return None
    if not key:
        return _resolve_name(tree, value)
    found = _by_link(tree, key, value)
    if found:
        return found
    names = block_devices(tree)
    if tree.blkid is not None and names:
        nodes = {n: device_node(tree, n) for n in names}
        by_path = parse_blkid(tree.blkid([p for p in nodes.values() if p]))
        for p in nodes.values():
            if p and _matches(key, value, by_path.get(p, {}).get(key)):
                return p
    if tree.probe:
        for n in names:
            if _matches(key, value, probe(tree, n).get(key)):
                return device_node(tree, n)
    return None


def _resolve_name(tree: DevTree, value: str) -> str | None:
    m = re.fullmatch(r"(\d+):(\d+)", value)
    if m:
        link = os.path.join(tree.sys, "dev", "block", f"{m.group(1)}:{m.group(2)}")
        if not os.path.exists(link):
            return None
        return device_node(tree, os.path.basename(os.path.realpath(link)))
    if value.startswith("/dev/"):
        name = value[len("/dev/") :]
    elif "/" in value:
        return value if os.path.exists(value) else None  # a path elsewhere (tests, loop files)
    else:
        name = value
    path = os.path.join(tree.dev, name)
    if os.path.exists(path):
        return path
    if os.path.exists(os.path.join(tree.sys, "class", "block", name.replace("/", "!"))):
        return device_node(tree, name)
    return None


def describe_devices(tree: DevTree | None = None) -> str:
    """One line per block device with what the probe knows: shown when the
    root cannot be found, so the user sees what is there instead."""
    tree = tree or DevTree()
    names = block_devices(tree)
    if not names:
        return "no block devices with media"
    parts = []
    for n in names:
        tags = probe(tree, n) if tree.probe else {}
        desc = " ".join(f'{k}="{v}"' for k, v in sorted(tags.items()))
        parts.append(f"{n}{': ' + desc if desc else ''}")
    return "; ".join(parts)
