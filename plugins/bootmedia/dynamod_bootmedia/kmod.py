"""Kernel modules: the modules.dep closure (at image build time) and loading
(in Phase A).

The image builder carries the modules the boot media need plus everything
they depend on (``modules.dep``) and writes a ``modules.dep`` for that
subset, so busybox ``modprobe`` (which the kernel runs for on-demand
requests such as ``crypto-crc32c``) works in the initramfs. Phase A is our
modprobe: it loads what the boot path needs (a disk root: the virtio disk
and the file system; a live root: also the CD-ROM, loop, squashfs, overlay,
iso9660/udf) in dependency order with ``finit_module(2)`` -- no process per
module, a precise error for each one, and nothing loaded that this boot
does not use (each module costs time under TCG).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# What each boot path needs (modules.dep adds the dependencies). The disks
# of a VM are virtio; the live media a PC's IDE CD-ROM (or a virtio disk).
BUS_MODULES = ("virtio_pci", "virtio_blk")
LIVE_MODULES = ("ata_piix", "sr_mod", "loop", "squashfs", "overlay", "isofs", "udf")
# ext4 asks the crypto API for crc32c (a request_module, not modules.dep).
# Modules by file system type (a root=/dev/sr0 rootfstype=iso9660 needs
# the CD-ROM too); other types load the module of the same name.
FS_MODULES = {"ext4": ("crc32c_generic", "ext4"), "ext3": ("crc32c_generic", "ext4"),
              "ext2": ("crc32c_generic", "ext4"), "iso9660": ("ata_piix", "sr_mod", "isofs"),
              "udf": ("ata_piix", "sr_mod", "udf")}
MEDIA_MODULES = (*BUS_MODULES, *LIVE_MODULES, "crc32c_generic", "ext4")
# Carried but not loaded at boot (host directory sharing in test VMs).
EXTRA_MODULES = ("9p", "9pnet_virtio")
SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
MODULE_INIT_COMPRESSED_FILE = 4
SYS_finit_module = 313  # x86_64


def module_name(path: str) -> str:
    """``kernel/fs/ext4/ext4.ko`` → ``ext4``; ``sr_mod.ko.xz`` → ``sr_mod``;
    dashes and underscores are the same to the kernel."""
    base = os.path.basename(path)
    for suffix in SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return normalize(base)


def normalize(name: str) -> str:
    return name.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """``path: dep dep`` lines → {path: [deps...]} (paths as written)."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        path, _, rest = line.partition(":")
        deps[path.strip()] = rest.split()
    return deps


@dataclass
class ModuleIndex:
    """modules.dep and modules.builtin of one kernel version."""

    deps: dict[str, list[str]] = field(default_factory=dict)
    builtin: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, moddir: str) -> ModuleIndex:
        with open(os.path.join(moddir, "modules.dep"), encoding="utf-8") as f:
            deps = parse_modules_dep(f.read())
        builtin: set[str] = set()
        try:
            with open(os.path.join(moddir, "modules.builtin"), encoding="utf-8") as f:
                builtin = {module_name(ln.strip()) for ln in f if ln.strip()}
        except OSError:
            pass
        return cls(deps, builtin)

    def path_of(self, name: str) -> str | None:
        name = normalize(name)
        for path in self.deps:
            if module_name(path) == name:
                return path
        return None

    def closure(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """Module files to load for ``names``, each after its dependencies
        (a depth-first post-order; modules.dep lists the full transitive
        set per module, recursion makes the order right). Returns
        ``(paths, missing)``; built-in modules are neither."""
        order: list[str] = []
        seen: set[str] = set()
        missing: list[str] = []

        def visit(path: str, stack: tuple[str, ...]) -> None:
            if path in seen or path in stack:
                return
            for dep in self.deps.get(path, []):
                visit(dep, (*stack, path))
            seen.add(path)
            order.append(path)

        for name in names:
            if normalize(name) in self.builtin:
                continue
            path = self.path_of(name)
            if path is None:
                missing.append(name)
                continue
            visit(path, ())
        return order, missing


def boot_modules(live: bool, fstypes: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The modules one boot path needs, in load order."""
    names = list(BUS_MODULES)
    if live:
        names += LIVE_MODULES
    else:
        for fstype in fstypes:
            names += FS_MODULES.get(fstype, (fstype,))
    names += list(extra)
    return list(dict.fromkeys(names))


def write_subset(index: ModuleIndex, moddir: str, paths: Iterable[str], dest: str) -> int:
    """Copy the module files ``paths`` (relative to ``moddir``) to ``dest``
    and write modules.dep (restricted to the subset) and modules.builtin,
    so that busybox modprobe works on the subset. Returns the bytes copied."""
    import shutil

    paths = list(dict.fromkeys(paths))
    chosen = set(paths)
    total = 0
    os.makedirs(dest, exist_ok=True)
    for rel in paths:
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(moddir, rel), target)
        total += os.path.getsize(target)
    with open(os.path.join(dest, "modules.dep"), "w", encoding="utf-8") as f:
        for rel in paths:
            deps = [d for d in index.deps.get(rel, []) if d in chosen]
            f.write(f"{rel}:{''.join(' ' + d for d in deps)}\n")
    builtin = os.path.join(moddir, "modules.builtin")
    if os.path.exists(builtin):
        shutil.copyfile(builtin, os.path.join(dest, "modules.builtin"))
    return total


def finit_module(path: str) -> None:
    """Load one module file; EEXIST (already loaded) is not an error."""
    flags = MODULE_INIT_COMPRESSED_FILE if not path.endswith(".ko") else 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ret = libc.syscall(SYS_finit_module, fd, b"", flags)
        if ret != 0:
            err = ctypes.get_errno()
            if err != errno.EEXIST:
                raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def load_modules(names: Iterable[str], moddir: str, *, log: Callable[[str], None],
                 loader: Callable[[str], None] = finit_module,
                 sys_module: str = "/sys/module") -> list[str]:
    """modprobe ``names`` (dependencies first). Modules already loaded or
    built in are skipped; a module that fails is logged and the rest go on
    (the mount that needs it reports the real failure). Returns the names
    loaded."""
    index = ModuleIndex.load(moddir)
    paths, missing = index.closure(names)
    for name in missing:
        log(f"kernel module {name} is not in {moddir}/modules.dep (built in, or not carried)")
    loaded: list[str] = []
    for rel in paths:
        name = module_name(rel)
        if os.path.isdir(os.path.join(sys_module, name)) and os.path.exists(
            os.path.join(sys_module, name, "initstate")
        ):
            continue
        try:
            loader(os.path.join(moddir, rel))
            loaded.append(name)
        except OSError as exc:
            log(f"cannot load kernel module {name}: {exc.strerror or exc}")
    return loaded
