"""A writer (and a small reader, for the tests) of the cpio "newc" format
the kernel unpacks into its initramfs. Writing it ourselves lets the image
carry device nodes (/dev/console, /dev/urandom, ...) without creating them
on the build machine, and needs no cpio binary."""

from __future__ import annotations

import gzip
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    name: str  # relative, no leading slash ("dev/console")
    mode: int  # including the file type bits
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    rdev: tuple[int, int] = (0, 0)


def _pad(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


class Writer:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.ino = 1
        self.count = 0
        self.size = 0

    def add(self, e: Entry) -> None:
        name = e.name.encode() + b"\0"
        fields = (
            self.ino, e.mode, e.uid, e.gid, 2 if stat.S_ISDIR(e.mode) else 1, e.mtime, len(e.data),
            0, 0, e.rdev[0], e.rdev[1], len(name), 0,
        )
        header = MAGIC + b"".join(f"{v:08x}".encode() for v in fields)
        chunk = header + name + _pad(len(header) + len(name)) + e.data + _pad(len(e.data))
        self.out.write(chunk)
        self.size += len(chunk)
        self.ino += 1
        self.count += 1

    def add_tree(self, root: str, *, mtime: int = 0) -> None:
        """Every file, directory and symlink under ``root`` (sorted, so the
        archive is reproducible), owned by root, with ``mtime``."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            if rel_dir != ".":
                st = os.lstat(dirpath)
                self.add(Entry(rel_dir, stat.S_IFDIR | stat.S_IMODE(st.st_mode), mtime=mtime))
            for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                path = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    self.add(Entry(rel, stat.S_IFLNK | 0o777, os.readlink(path).encode(), mtime=mtime))
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        self.add(Entry(rel, stat.S_IFREG | stat.S_IMODE(st.st_mode), f.read(), mtime=mtime))
            # symlinks to directories are listed in dirnames; os.walk does not descend them
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]

    def finish(self) -> None:
        self.add(Entry(TRAILER, 0))


def write_archive(root: str, path: str, extra: list[Entry] = (), compress: str = "none",
                  level: int = 6) -> tuple[int, int]:
    """Archive ``root`` plus ``extra`` entries (device nodes) to ``path``.
    Returns (uncompressed size, entries)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as raw:
        out: BinaryIO = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=0) if compress == "gzip" else raw
        w = Writer(out)
        w.add_tree(root)
        for e in extra:
            w.add(e)
        w.finish()
        if compress == "gzip":
            out.close()
    os.replace(tmp, path)
    return w.size, w.count


def read_archive(data: bytes) -> Iterator[Entry]:
    """Parse a newc archive (optionally gzip'ed); for the tests."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    pos = 0
    while pos < len(data):
        if data[pos : pos + 6] != MAGIC:
            raise ValueError(f"bad cpio magic at {pos}")
        vals = [int(data[pos + 6 + i * 8 : pos + 14 + i * 8], 16) for i in range(13)]
        namesize, filesize = vals[11], vals[6]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize
        data_start += (4 - data_start % 4) % 4
        body = data[data_start : data_start + filesize]
        pos = data_start + filesize
        pos += (4 - pos % 4) % 4
        if name == TRAILER:
            return
        yield Entry(name, vals[1], body, vals[2], vals[3], vals[5], (vals[9], vals[10]))
