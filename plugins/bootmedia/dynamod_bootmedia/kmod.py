"""Kernel modules: the modules.dep closure (at image build time) and loading
(in Phase A).

The image builder carries the modules the boot media need plus everything
they depend on (``modules.dep``) and writes a ``modules.dep`` for that
subset, so busybox ``modprobe`` (which the kernel runs for on-demand
requests such as ``crypto-crc32c``) works in the initramfs. Phase A loads
the list in ``dynamod.load`` (written by the builder) itself, in dependency
order, with ``finit_module(2)``: no process per module, and a precise error
for each one.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# What the boot media need, in load order (modules.dep adds the rest):
# virtio disks and the PC's IDE CD-ROM, ext4 (crc32c is requested through
# the crypto API, not modules.dep), loop + squashfs + overlay for the live
# root, iso9660 / udf for the live media.
MEDIA_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "ata_piix",
    "sr_mod",
    "crc32c_generic",
    "ext4",
    "loop",
    "squashfs",
    "overlay",
    "isofs",
    "udf",
)
# Carried but not loaded at boot (host directory sharing in test VMs).
EXTRA_MODULES = ("9p", "9pnet_virtio")
LOAD_LIST = "dynamod.load"
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


def write_subset(index: ModuleIndex, moddir: str, paths: Iterable[str], dest: str,
                 load: Iterable[str] = ()) -> int:
    """Copy the module files ``paths`` (relative to ``moddir``) to ``dest``
    and write modules.dep (restricted to the subset), modules.builtin and
    the ``dynamod.load`` list. Returns the bytes copied."""
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
    with open(os.path.join(dest, LOAD_LIST), "w", encoding="utf-8") as f:
        f.write("".join(f"{n}\n" for n in load))
    return total


def read_load_list(moddir: str) -> list[str] | None:
    try:
        with open(os.path.join(moddir, LOAD_LIST), encoding="utf-8") as f:
            return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    except OSError:
        return None


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
