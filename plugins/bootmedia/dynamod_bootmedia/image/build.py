"""The image builder: an initramfs, an ext4 root disk image and a live ISO,
from this machine's own files (its Python, busybox, kernel and modules, and
dynamod with the chosen plugins from the current environment).

Each artifact is rebuilt only when its inputs changed: a key (a hash of the
builder's version, the interpreter, busybox, the kernel, every source file
of dynamod and the plugins, the installed distributions' versions, the
service configs and the options) is stored in ``manifest.json`` next to the
artifacts, so a test session builds once and later sessions reuse it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from dynamod_bootmedia import kmod
from dynamod_bootmedia.image import cpio, pyrt
from dynamod_bootmedia.image.kernel import Kernel, find_kernel, install_debian_kernel

BUILDER_VERSION = 3
DEFAULT_LABEL = "dynaroot"
ISO_LABEL = "DYNAISO"
SQUASHFS_PATH = "live/root.squashfs"
MANIFEST = "manifest.json"
USRMERGE = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
ARTIFACTS = ("initramfs", "disk", "iso")
GUEST_CHECKS_DIR = "/usr/lib/dynamod/vmtest"

VMTEST_SERVICE = """\
# The in-VM test runner. Inert unless the kernel command line has
# dynamod.test=NAME (the VM test harness adds it): then it waits for the
# services, runs its checks, prints the results on the console and powers off.
[service]
name = "vmtest"
description = "VM test runner (active only with dynamod.test= on the kernel command line)"
exec = ["/usr/bin/python3", "-m", "dynamod_bootmedia.guest"]

[restart]
policy = "temporary"
"""


class BuildError(Exception):
    pass


@dataclass
class Options:
    out: str = "build/vm"
    kernel: str | None = None
    modules: str | None = None  # the kernel's modules directory
    plugins: list[str] | None = None  # distributions; None: every installed dynamod plugin
    services: list[str] | None = None  # config dirs (services/, supervisors/); None: examples/demo
    add: list[str] = field(default_factory=list)  # trees copied onto the root fs
    label: str = DEFAULT_LABEL
    iso_label: str = ISO_LABEL
    initramfs_compression: str = "gzip"
    squashfs_compression: str = "zstd"
    disk_free_mb: int = 64
    strip: bool = True
    full_stdlib: bool = False  # root fs: the whole stdlib instead of the traced one
    only: tuple[str, ...] = ARTIFACTS
    force: bool = False
    keep_stage: bool = False
    install_kernel: bool = True


@dataclass
class Images:
    """What a build produced (also the manifest's content)."""

    out: str
    kernel: str
    kernel_version: str
    initramfs: str | None = None
    disk: str | None = None
    iso: str | None = None
    label: str = DEFAULT_LABEL
    uuid: str = ""
    iso_label: str = ISO_LABEL
    sizes: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)  # rebuilt this time (else cached)

    @classmethod
    def load(cls, out: str) -> Images | None:
        try:
            with open(os.path.join(out, MANIFEST), encoding="utf-8") as f:
                data = json.load(f)
            data.pop("built", None)
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


# ------------------------------------------------------------------ helpers

class Progress:
    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.say = say or (lambda m: print(m, file=sys.stderr, flush=True))

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.say(f"[dynamod-mkimage] {what} ...")
        started = time.monotonic()
        yield
        self.say(f"[dynamod-mkimage]   done in {time.monotonic() - started:.1f}s")


def _hash_tree(h: Any, root: str) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".pytest_cache", "tests"))
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())


def _stat_key(path: str) -> str:
    st = os.stat(path)
    return f"{path}:{st.st_size}:{int(st.st_mtime)}"


def _du(root: str) -> tuple[int, int]:
    """(bytes in 4 KiB blocks, files) of a tree."""
    total, files = 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        total += 4096 * (1 + len(dirnames))
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            total += (st.st_size + 4095) // 4096 * 4096
            files += 1
    return total, files


def _allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


def mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


def _run(cmd: list[str], what: str, **kw: Any) -> None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError as exc:
        raise BuildError(f"{what}: {cmd[0]} not found ({exc})") from None
    if res.returncode != 0:
        raise BuildError(f"{what} failed ({' '.join(cmd[:3])} ...): {(res.stderr or res.stdout)[-1500:]}")


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if not path:
        raise BuildError(f"{name} is missing: apt-get install {package}")
    return path


class Stage:
    """A directory that becomes a guest file system: a usrmerged layout
    (/bin, /sbin, /lib, /lib64 are links into /usr)."""

    def __init__(self, root: str) -> None:
        self.root = root
        if os.path.exists(root):
            shutil.rmtree(root)
        os.makedirs(root)
        for link, target in USRMERGE.items():
            os.makedirs(os.path.join(root, target), exist_ok=True)
            os.symlink(target, os.path.join(root, link))

    def host(self, guest: str) -> str:
        rel = guest.lstrip("/")
        first, _, rest = rel.partition("/")
        if first in USRMERGE:
            rel = USRMERGE[first] + ("/" + rest if rest else "")
        return os.path.join(self.root, rel)

    def mkdir(self, guest: str, mode: int = 0o755) -> None:
        path = self.host(guest)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)

    def copy(self, src: str, guest: str, mode: int | None = None) -> str:
        dest = self.host(guest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(src, dest)
        os.chmod(dest, mode if mode is not None else stat.S_IMODE(os.stat(src).st_mode))
        return dest

    def write(self, guest: str, text: str, mode: int = 0o644) -> None:
        dest = self.host(guest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(dest, mode)

    def symlink(self, target: str, guest: str) -> None:
        dest = self.host(guest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.lexists(dest):
            os.symlink(target, dest)

    def exists(self, guest: str) -> bool:
        return os.path.lexists(self.host(guest))


# ------------------------------------------------------------------ builder

class Builder:
    def __init__(self, opts: Options, progress: Progress | None = None) -> None:
        self.opts = opts
        self.progress = progress or Progress()
        self.out = os.path.abspath(opts.out)
        self.rt = pyrt.Runtime.current()
        self.sizes: dict[str, Any] = {}

    def say(self, msg: str) -> None:
        self.progress.say(f"[dynamod-mkimage] {msg}")

    # ---------------------------------------------------------------- inputs
    def kernel(self) -> Kernel:
        k = find_kernel(self.opts.kernel, self.opts.modules)
        if k is None and self.opts.install_kernel:
            install_debian_kernel(self.say)
            k = find_kernel()
        if k is None:
            raise BuildError("no kernel: install linux-image-amd64 (as root) or pass --kernel PATH")
        return k

    def plugin_dists(self) -> list[str]:
        if self.opts.plugins is not None:
            return list(self.opts.plugins)
        names = set()
        for group in ("dynamod", "dynamodctl"):
            for ep in metadata.entry_points(group=group):
                if ep.dist is not None:
                    names.add(ep.dist.metadata["Name"])
        names.add("dynamod-bootmedia")
        return sorted(names)

    def service_dirs(self) -> list[str]:
        if self.opts.services is not None:
            return list(self.opts.services)
        demo = Path(__file__).resolve().parents[4] / "examples" / "demo"
        return [str(demo)] if demo.is_dir() else []

    def busybox(self) -> str:
        for cand in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
            if cand and os.access(cand, os.X_OK):
                return os.path.realpath(cand)
        raise BuildError("busybox is missing: apt-get install busybox-static")

    def keys(self, kernel: Kernel, dists: list[metadata.Distribution]) -> dict[str, str]:
        common = hashlib.sha256()
        common.update(f"builder {BUILDER_VERSION}\n".encode())
        common.update(_stat_key(self.rt.executable).encode())
        common.update(self.rt.stdlib.encode())
        common.update(_stat_key(self.busybox()).encode())
        common.update(_stat_key(kernel.image).encode() + (kernel.moddir or "").encode())
        for d in sorted(dists, key=lambda d: d.metadata["Name"].lower()):
            common.update(f"{d.metadata['Name']}=={d.version}\n".encode())
            src = pyrt.editable_source(d)
            if src:
                for top in pyrt.top_level_names(d):
                    if os.path.isdir(os.path.join(src, top)):
                        _hash_tree(common, os.path.join(src, top))
        base = common.hexdigest()
        o = self.opts

        def key(*parts: object) -> str:
            return hashlib.sha256(json.dumps([base, *parts], default=str).encode()).hexdigest()[:24]

        root = hashlib.sha256()
        for d in self.service_dirs() + o.add:
            root.update(d.encode())
            _hash_tree(root, d)
        root_key = key("root", root.hexdigest(), o.full_stdlib, o.strip, sorted(self.plugin_dists()))
        return {
            "initramfs": key("initramfs", o.initramfs_compression, o.strip),
            "root": root_key,
            "disk": key(root_key, "disk", o.label, o.disk_free_mb),
            "iso": key(root_key, "iso", o.iso_label, o.squashfs_compression),
        }

    # ----------------------------------------------------------------- build
    def build(self) -> Images:
        o = self.opts
        os.makedirs(self.out, exist_ok=True)
        kernel = self.kernel()
        plugins = self.plugin_dists()
        dists = pyrt.dist_closure(["dynamod", *plugins])
        keys = self.keys(kernel, dists)
        old = Images.load(self.out)
        images = Images(out=self.out, kernel=kernel.image, kernel_version=kernel.version,
                        label=o.label, iso_label=o.iso_label, keys={})
        # Deterministic per input: the same sources give the same UUID.
        images.uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"dynamod-root:{keys['disk']}"))
        if old:
            images.sizes = dict(old.sizes)
        self.sizes = images.sizes
        self.sizes["kernel"] = {"bytes": os.path.getsize(kernel.image), "version": kernel.version}
        self.say(f"kernel {kernel.describe()}; python {self.rt.executable} ({self.rt.version}); "
                 f"plugins {', '.join(plugins)}")

        def fresh(name: str, path: str) -> bool:
            return (not o.force and old is not None and old.keys.get(name) == keys[name]
                    and os.path.exists(path))

        paths = {
            "initramfs": os.path.join(self.out, "initramfs.img"),
            "disk": os.path.join(self.out, "disk.img"),
            "iso": os.path.join(self.out, "root.iso"),
        }
        for name in ARTIFACTS:
            if name not in o.only:
                if old and getattr(old, name) and old.keys.get(name) == keys[name]:
                    setattr(images, name, getattr(old, name))
                    images.keys[name] = keys[name]
                continue
            if fresh(name, paths[name]):
                self.say(f"{name}: up to date ({paths[name]})")
                setattr(images, name, paths[name])
                images.keys[name] = keys[name]

        todo = [n for n in ARTIFACTS if n in o.only and getattr(images, n) is None]
        if "initramfs" in todo:
            self.build_initramfs(kernel, dists, paths["initramfs"])
            images.initramfs = paths["initramfs"]
            images.keys["initramfs"] = keys["initramfs"]
            images.built.append("initramfs")
        if "disk" in todo or "iso" in todo:
            stage = self.stage_root(kernel, dists)
            if "disk" in todo:
                self.build_disk(stage, paths["disk"], images.uuid)
                images.disk = paths["disk"]
                images.keys["disk"] = keys["disk"]
                images.built.append("disk")
            if "iso" in todo:
                self.build_iso(stage, paths["iso"])
                images.iso = paths["iso"]
                images.keys["iso"] = keys["iso"]
                images.built.append("iso")
            if not o.keep_stage:
                shutil.rmtree(stage.root, ignore_errors=True)
        with open(os.path.join(self.out, MANIFEST), "w", encoding="utf-8") as f:
            data = asdict(images)
            json.dump(data, f, indent=2)
        return images

    # ---------------------------------------------------------------- python
    def _trace(self, spec: dict[str, Any]) -> dict[str, str | None]:
        result = pyrt.trace(spec)
        return result["modules"]

    def _first_party_dirs(self, dists: list[metadata.Distribution]) -> dict[str, str]:
        """{top-level package: source dir} of the editable (first-party)
        distributions."""
        out = {}
        for d in dists:
            src = pyrt.editable_source(d)
            if src:
                for top in pyrt.top_level_names(d):
                    if os.path.isdir(os.path.join(src, top)):
                        out[top] = os.path.join(src, top)
        return out

    def stage_python(self, stage: Stage, modules: dict[str, str | None], *, full_stdlib: bool = False) -> list[str]:
        """The interpreter and the stdlib modules among ``modules``; returns
        the ELF files carried (for the library closure)."""
        rt = self.rt
        elves = [stage.copy(rt.executable, rt.guest_exe, 0o755)]
        stage.symlink(os.path.basename(rt.guest_exe), "/usr/bin/python3")
        excluded = pyrt.STDLIB_EXCLUDE
        if full_stdlib:
            for dirpath, dirnames, filenames in os.walk(rt.stdlib):
                rel = os.path.relpath(dirpath, rt.stdlib)
                top = rel.split(os.sep)[0]
                if top in excluded or top.startswith(("config-", "site-packages")) or "__pycache__" in rel:
                    dirnames[:] = []
                    continue
                for name in filenames:
                    if name.endswith((".pyc", ".exe")) or (top == "lib-dynload" and name.split(".")[0] in excluded):
                        continue
                    dest = stage.copy(os.path.join(dirpath, name), f"{rt.guest_lib}/{os.path.normpath(os.path.join(rel, name))}")
                    if name.endswith(".so"):
                        elves.append(dest)
            return elves
        names = dict(modules)
        for extra in pyrt.STARTUP:
            if extra not in names:
                names[extra] = os.path.join(rt.stdlib, *extra.split(".")) + (
                    "/__init__.py" if extra == "encodings" else ".py")
        for name, file in sorted(names.items()):
            if not file or not rt.is_stdlib(file):
                continue
            if any(name == e or name.startswith(e + ".") for e in excluded):
                continue
            if not os.path.exists(file):
                continue
            guest = rt.guest_path_of_module(name, file)
            if guest is None:
                continue
            dest = stage.copy(file, guest)
            if dest.endswith(".so"):
                elves.append(dest)
        return elves

    def stage_site(self, stage: Stage, dists: list[metadata.Distribution],
                   modules: dict[str, str | None] | None) -> list[str]:
        """site-packages: whole distributions (root fs), or only the traced
        modules of them plus their dist-info (initramfs)."""
        site = stage.host(f"{self.rt.guest_lib}/site-packages")
        os.makedirs(site, exist_ok=True)
        elves: list[str] = []
        if modules is None:
            for d in dists:
                pyrt.copy_dist(d, site)
        else:
            tops: dict[str, metadata.Distribution] = {}
            for d in dists:
                for top in pyrt.top_level_names(d):
                    tops[top] = d
            used: set[str] = set()
            for name, file in sorted(modules.items()):
                top = name.split(".")[0]
                if not file or top not in tops or self.rt.is_stdlib(file):
                    continue
                if any(name == e or name.startswith(e + ".") for e in pyrt.STDLIB_EXCLUDE):
                    continue
                guest = self.rt.guest_path_of_module(name, file)
                if guest:
                    stage.copy(file, guest)
                    used.add(tops[top].metadata["Name"])
            for d in dists:
                if d.metadata["Name"] in used:
                    pyrt.copy_dist(d, site, packages=[], info_only=True)
        for dirpath, _dirs, files in os.walk(site):
            elves.extend(os.path.join(dirpath, f) for f in files if f.endswith(".so"))
        return elves

    def stage_libs(self, stage: Stage, elves: list[str]) -> list[str]:
        """The shared libraries of ``elves`` (resolved on this machine by
        ldd, from the original files), stripped when asked."""
        libs: dict[str, str] = {}
        for elf in elves:
            for lib in pyrt.ldd(elf):
                libs.setdefault(pyrt.guest_lib_path(lib), lib)
        # ldd of the staged interpreter does not find libpython (its RUNPATH
        # is the build machine's); ask the original.
        for lib in pyrt.ldd(self.rt.executable):
            libs.setdefault(pyrt.guest_lib_path(lib), lib)
        copied = []
        for guest, host in sorted(libs.items()):
            if stage.exists(guest):
                continue
            copied.append(stage.copy(os.path.realpath(host), guest, 0o755))
        if self.opts.strip:
            self.strip([*elves, *copied])
        return sorted(libs)

    def strip(self, files: list[str]) -> None:
        tool = shutil.which("strip")
        if not tool:
            return
        files = [f for f in files if pyrt.is_elf(f) and "ld-linux" not in f]
        for i in range(0, len(files), 200):
            subprocess.run([tool, "--strip-unneeded", *files[i : i + 200]],
                           capture_output=True, check=False)

    def stage_busybox(self, stage: Stage) -> list[str]:
        bb = self.busybox()
        stage.copy(bb, "/bin/busybox", 0o755)
        try:
            applets = subprocess.run([bb, "--list-full"], capture_output=True, text=True, timeout=30).stdout.split()
        except (OSError, subprocess.TimeoutExpired):
            applets = []
        if not applets:
            applets = ["bin/sh", "bin/mount", "bin/umount", "sbin/modprobe", "sbin/mdev", "sbin/blkid"]
        for path in applets:
            if path.strip("/") in ("bin/busybox", "usr/bin/busybox"):
                continue
            stage.symlink("/bin/busybox", "/" + path.strip("/"))
        return [bb] if pyrt.ldd(bb) else []

    def stage_modules(self, stage: Stage, kernel: Kernel) -> int:
        if not kernel.moddir:
            return 0
        index = kmod.ModuleIndex.load(kernel.moddir)
        paths, missing = index.closure([*kmod.MEDIA_MODULES, *kmod.EXTRA_MODULES])
        if missing:
            self.say(f"note: modules not in {kernel.moddir} (built in?): {', '.join(missing)}")
        dest = stage.host(f"/lib/modules/{kernel.version}")
        size = kmod.write_subset(index, kernel.moddir, paths, dest)
        self.sizes.setdefault("modules", {})["count"] = len(paths)
        self.sizes["modules"]["bytes"] = size
        return size

    def python_scripts(self, stage: Stage) -> None:
        exe = self.rt.guest_exe
        scripts = {
            "/sbin/dynamod-init": "from dynamod.init.main import main\nmain()\n",
            "/usr/bin/dynamod-svmgr": "from dynamod.svmgr.main import main\nmain()\n",
            "/usr/bin/dynamodctl": "import sys\nfrom dynamod.ctl.main import main\nsys.exit(main())\n",
            "/usr/bin/dynamod-vmtest": "from dynamod_bootmedia.guest import main\nmain()\n",
        }
        for path, body in scripts.items():
            stage.write(path, f"#!{exe} -I\n{body}", 0o755)

    # ------------------------------------------------------------- initramfs
    def build_initramfs(self, kernel: Kernel, dists: list[metadata.Distribution], path: str) -> None:
        o = self.opts
        first_party = self._first_party_dirs(dists)
        boot_dists = pyrt.dist_closure(["dynamod", "dynamod-bootmedia"])
        with self.progress.step("initramfs: tracing the imports of PID 1's Phase A (guest configuration)"):
            modules = self._trace({
                "roots": ["dynamod.init.main", "dynamod_bootmedia.plugin", "encodings.utf_8"],
                "first_party": list(first_party.values()),
                "plugins": ["dynamod-bootmedia"],
                "exercise": ["plugin-host"],
                "exclude": list(pyrt.STDLIB_EXCLUDE),
            })
        stage = Stage(os.path.join(self.out, "stage-initramfs"))
        with self.progress.step("initramfs: copying python, the pruned stdlib, dynamod, busybox, modules"):
            elves = self.stage_python(stage, modules)
            elves += self.stage_site(stage, boot_dists, modules)
            elves += self.stage_busybox(stage)
            libs = self.stage_libs(stage, elves)
            self.stage_modules(stage, kernel)
            for d in ("/proc", "/sys", "/dev", "/run", "/newroot", "/tmp", "/etc", "/root"):
                stage.mkdir(d, 0o1777 if d == "/tmp" else 0o755)
            stage.write("/init", f"#!{self.rt.guest_exe} -I\nfrom dynamod.init.main import main\nmain()\n", 0o755)
            stage.symlink("/proc/self/mounts", "/etc/mtab")
        with self.progress.step("initramfs: byte-compiling (sourceless, unchecked-hash .pyc)"):
            pyrt.compile_tree(stage.host(self.rt.guest_lib), self.rt.guest_lib, sourceless=True)
        devices = [
            cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
            cpio.Entry("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3)),
            cpio.Entry("dev/zero", stat.S_IFCHR | 0o666, rdev=(1, 5)),
            cpio.Entry("dev/random", stat.S_IFCHR | 0o666, rdev=(1, 8)),
            cpio.Entry("dev/urandom", stat.S_IFCHR | 0o666, rdev=(1, 9)),
            cpio.Entry("dev/kmsg", stat.S_IFCHR | 0o644, rdev=(1, 11)),
            cpio.Entry("dev/tty", stat.S_IFCHR | 0o666, rdev=(5, 0)),
        ]
        with self.progress.step(f"initramfs: writing the cpio archive ({o.initramfs_compression})"):
            raw, count = cpio.write_archive(stage.root, path, devices, compress=o.initramfs_compression)
        n_std = sum(1 for n, f in modules.items() if f and self.rt.is_stdlib(f))
        self.sizes["initramfs"] = {
            "bytes": os.path.getsize(path), "uncompressed": raw, "entries": count,
            "compression": o.initramfs_compression, "stdlib_modules": n_std, "libs": len(libs),
        }
        if not o.keep_stage:
            shutil.rmtree(stage.root, ignore_errors=True)

    # --------------------------------------------------------------- root fs
    def stage_root(self, kernel: Kernel, dists: list[metadata.Distribution]) -> Stage:
        o = self.opts
        first_party = self._first_party_dirs(dists)
        roots = []
        for top, src in first_party.items():
            for dirpath, dirnames, filenames in os.walk(src):
                dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "tests")]
                for name in filenames:
                    if name.endswith(".py"):
                        rel = os.path.relpath(os.path.join(dirpath, name), src)[:-3].replace(os.sep, ".")
                        mod = top + ("" if rel == "__init__" else "." + rel.removesuffix(".__init__"))
                        if mod not in ("dynamod.testing",):
                            roots.append(mod)
        third_party = [d.metadata["Name"] for d in dists if not pyrt.editable_source(d)]
        modules: dict[str, str | None] = {}
        if not o.full_stdlib:
            with self.progress.step(f"root fs: tracing the imports of init, svmgr, dynamodctl and {len(first_party)} packages"):
                modules = self._trace({
                    "roots": sorted(roots),
                    "first_party": list(first_party.values()),
                    "plugins": self.plugin_dists(),
                    "exercise": ["plugin-host", "ctl-plugin-host", "ctl:--help", "ctl:list --help"],
                    "scan": third_party,
                    # host-side tools: shipped with the plugin, never run in the guest
                    "exclude": [*pyrt.STDLIB_EXCLUDE, "dynamod.testing", "dynamod_bootmedia.cli",
                                "dynamod_bootmedia.vm", "dynamod_bootmedia.testing"],
                })
        stage = Stage(os.path.join(self.out, "stage-root"))
        with self.progress.step("root fs: copying python, stdlib, site-packages, busybox, modules, services"):
            elves = self.stage_python(stage, modules, full_stdlib=o.full_stdlib)
            elves += self.stage_site(stage, dists, None)
            elves += self.stage_busybox(stage)
            self.stage_libs(stage, elves)
            self.stage_modules(stage, kernel)
            self.python_scripts(stage)
            self.stage_etc(stage)
        with self.progress.step("root fs: byte-compiling (unchecked-hash .pyc)"):
            pyrt.compile_tree(stage.host(self.rt.guest_lib), self.rt.guest_lib, sourceless=False)
        size, files = _du(stage.root)
        n_std = sum(1 for n, f in modules.items() if f and self.rt.is_stdlib(f)) if modules else "all"
        self.sizes["root"] = {"bytes": size, "files": files, "stdlib_modules": n_std}
        return stage

    def stage_etc(self, stage: Stage) -> None:
        for d in ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/lib/dynamod", "/var/log",
                  "/root", "/home", "/mnt", "/etc/dynamod/services", "/etc/dynamod/supervisors",
                  GUEST_CHECKS_DIR):
            stage.mkdir(d, 0o1777 if d.endswith("tmp") else (0o700 if d == "/root" else 0o755))
        stage.write("/etc/hostname", "dynamod\n")
        stage.write("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        stage.write("/etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
        stage.write("/etc/shadow", "root::19000:0:99999:7:::\n", 0o600)
        stage.write("/etc/shells", "/bin/sh\n/bin/ash\n")
        stage.write("/etc/fstab", "# the root is mounted by dynamod-init's Phase A (kernel command line)\n")
        stage.write("/etc/profile", 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nPS1="\\h:\\w\\$ "\n')
        stage.write("/etc/os-release", 'NAME="dynamod test image"\nID=dynamod\nPRETTY_NAME="dynamod test image"\n')
        stage.write("/etc/machine-id", "")
        stage.symlink("/proc/self/mounts", "/etc/mtab")
        for src in self.service_dirs():
            for sub in ("services", "supervisors"):
                d = os.path.join(src, sub)
                if os.path.isdir(d):
                    for name in sorted(os.listdir(d)):
                        if name.endswith(".toml"):
                            stage.copy(os.path.join(d, name), f"/etc/dynamod/{sub}/{name}", 0o644)
        stage.write("/etc/dynamod/services/vmtest.toml", VMTEST_SERVICE)
        for tree in self.opts.add:
            shutil.copytree(tree, stage.root, symlinks=True, dirs_exist_ok=True)

    def build_disk(self, stage: Stage, path: str, fs_uuid: str) -> None:
        mke2fs = need_tool("mke2fs", "e2fsprogs")
        size, files = _du(stage.root)
        total = int(size * 1.15) + self.opts.disk_free_mb * 1048576
        total = (total + 1048575) // 1048576 * 1048576
        inodes = files + 4096 + files // 2
        tmp = path + ".tmp"
        if os.path.exists(tmp):
            os.unlink(tmp)
        with self.progress.step(f"disk: mke2fs -d (ext4, LABEL={self.opts.label}, {mib(total)})"):
            _run([mke2fs, "-q", "-F", "-t", "ext4", "-L", self.opts.label, "-U", fs_uuid, "-m", "0",
                  "-N", str(inodes), "-J", "size=4", "-E", "root_owner=0:0", "-d", stage.root, tmp,
                  f"{total // 1024}k"], "mke2fs")
            os.replace(tmp, path)
        self.sizes["disk"] = {"bytes": os.path.getsize(path), "allocated": _allocated(path),
                              "label": self.opts.label, "uuid": fs_uuid}

    def build_iso(self, stage: Stage, path: str) -> None:
        mksquashfs = need_tool("mksquashfs", "squashfs-tools")
        xorriso = need_tool("xorriso", "xorriso")
        iso_root = os.path.join(self.out, "stage-iso")
        if os.path.exists(iso_root):
            shutil.rmtree(iso_root)
        os.makedirs(os.path.join(iso_root, os.path.dirname(SQUASHFS_PATH)))
        sq = os.path.join(iso_root, SQUASHFS_PATH)
        comp = self.opts.squashfs_compression
        with self.progress.step(f"iso: mksquashfs ({comp})"):
            cmd = [mksquashfs, stage.root, sq, "-noappend", "-comp", comp, "-no-progress", "-quiet"]
            _run(cmd, "mksquashfs")
        with self.progress.step(f"iso: xorriso (volume id {self.opts.iso_label})"):
            tmp = path + ".tmp"
            _run([xorriso, "-as", "mkisofs", "-quiet", "-V", self.opts.iso_label, "-R", "-J",
                  "-o", tmp, iso_root], "xorriso")
            os.replace(tmp, path)
        self.sizes["squashfs"] = {"bytes": os.path.getsize(sq), "compression": comp}
        self.sizes["iso"] = {"bytes": os.path.getsize(path), "label": self.opts.iso_label}
        shutil.rmtree(iso_root, ignore_errors=True)


def summary(images: Images) -> str:
    s = images.sizes
    rows = []

    def row(name: str, size: str, notes: str) -> None:
        rows.append((name, size, notes))

    if "kernel" in s:
        row("kernel", mib(s["kernel"]["bytes"]), f"{images.kernel} ({images.kernel_version})")
    if "initramfs" in s and images.initramfs:
        i = s["initramfs"]
        row("initramfs", mib(i["bytes"]),
            f"{i['compression']}, {mib(i['uncompressed'])} unpacked, {i['entries']} entries, "
            f"{i['stdlib_modules']} stdlib modules, {i['libs']} shared libraries")
    if "modules" in s:
        row("  modules", mib(s["modules"]["bytes"]), f"{s['modules']['count']} kernel modules (in both images)")
    if "root" in s:
        r = s["root"]
        row("root tree", mib(r["bytes"]), f"{r['files']} files, stdlib modules: {r['stdlib_modules']}")
    if "disk" in s and images.disk:
        d = s["disk"]
        row("disk.img", mib(d["bytes"]), f"ext4 LABEL={d['label']} UUID={d['uuid']}, {mib(d['allocated'])} allocated")
    if "squashfs" in s and images.iso:
        row("root.squashfs", mib(s["squashfs"]["bytes"]), s["squashfs"]["compression"])
    if "iso" in s and images.iso:
        row("root.iso", mib(s["iso"]["bytes"]), f"volume id {s['iso']['label']}, {SQUASHFS_PATH}")
    width = max(len(r[0]) for r in rows) if rows else 0
    lines = [f"{n:<{width}}  {sz:>10}  {notes}" for n, sz, notes in rows]
    return "\n".join(lines)
