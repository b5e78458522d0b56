"""The Python runtime an image carries: this machine's interpreter, the
shared libraries it and its extension modules need, a pruned standard
library, and the site-packages of dynamod, the chosen plugins and their
dependencies, byte-compiled.

Guest layout: /usr/bin/python3.X, /usr/lib/pythonX.Y/ (stdlib, lib-dynload,
site-packages); libraries at the path ldd reports when that is a system
path (/lib, /lib64, /usr/lib), else in /usr/lib (libpython of a pyenv or
/opt build: its RUNPATH does not exist in the guest, the loader's default
path does).
"""

from __future__ import annotations

import compileall
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

SYSTEM_LIB_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")
# Never carried, whatever mentions them.
STDLIB_EXCLUDE = (
    "tkinter", "_tkinter", "turtle", "turtledemo", "idlelib", "test", "lib2to3", "ensurepip",
    "_testcapi", "_testinternalcapi", "_testbuffer", "_testmultiphase", "_testimportmultiple",
    "_ctypes_test", "_xxtestfuzz", "xxlimited", "xxlimited_35", "_xxsubinterpreters", "pydoc_data",
    "dynamod_bootmedia.image",
)
# Needed before any import statement runs (the codec of the guest's
# C.UTF-8 / POSIX locale and its fallbacks).
STARTUP = ("encodings", "encodings.aliases", "encodings.utf_8", "encodings.ascii", "encodings.latin_1")


@dataclass
class Runtime:
    """Where the running interpreter's pieces are on this machine."""

    executable: str  # the real binary (not the venv's symlink)
    version: str  # "3.11"
    stdlib: str
    dynload: str
    site: list[str]  # site-packages directories of the running environment

    @classmethod
    def current(cls) -> Runtime:
        exe = os.path.realpath(getattr(sys, "_base_executable", sys.executable) or sys.executable)
        base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        stdlib = os.path.realpath(base["stdlib"])
        dynload = os.path.join(os.path.realpath(base["platstdlib"]), "lib-dynload")
        site = sorted({os.path.realpath(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])})
        return cls(exe, version, stdlib, dynload, site)

    @property
    def guest_lib(self) -> str:
        return f"/usr/lib/python{self.version}"

    @property
    def guest_exe(self) -> str:
        return f"/usr/bin/python{self.version}"

    def guest_path_of_module(self, name: str, file: str) -> str | None:
        """Where a traced module's file goes in the guest (None: not ours
        to carry, e.g. a venv-only helper)."""
        real = os.path.realpath(file)
        if real.startswith(self.dynload + os.sep):
            return f"{self.guest_lib}/lib-dynload/{os.path.basename(real)}"
        if real.startswith(self.stdlib + os.sep):
            return f"{self.guest_lib}/{os.path.relpath(real, self.stdlib)}"
        parts = name.split(".")
        base = os.path.basename(real)
        if base == "__init__.py" or base.startswith("__init__."):
            rel = "/".join(parts) + "/" + base
        else:
            rel = "/".join([*parts[:-1], base])
        return f"{self.guest_lib}/site-packages/{rel}"

    def is_stdlib(self, file: str | None) -> bool:
        if not file:
            return False
        real = os.path.realpath(file)
        return real.startswith(self.stdlib + os.sep) and "site-packages" not in real.split(os.sep)


def trace(spec: dict[str, Any], python: str | None = None) -> dict[str, Any]:
    """Run the tracer in a fresh interpreter in isolated mode (-I: no
    PYTHON* variables, no current directory on sys.path), like the guest."""
    python = python or sys.executable
    with tempfile.TemporaryDirectory(prefix="dynamod-trace-") as tmp:
        spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DYNAMOD_"))}
        env["LC_ALL"] = "C"  # the guest has no locales: C.UTF-8 coercion, UTF-8 mode
        res = subprocess.run(
            [python, "-I", "-m", "dynamod_bootmedia.image.tracer", spec_path, out_path],
            capture_output=True, text=True, env=env, timeout=600, cwd=tmp,
        )
        if res.returncode != 0:
            raise RuntimeError(f"import tracer failed ({res.returncode}): {res.stderr[-2000:]}")
        with open(out_path, encoding="utf-8") as f:
            return json.load(f)


def ldd(path: str) -> list[str]:
    """The shared libraries ``path`` loads (absolute host paths), including
    the program interpreter; [] for static binaries."""
    try:
        res = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    libs = []
    for line in res.stdout.splitlines():
        m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            libs.append(m.group(1))
    return libs


def guest_lib_path(host_path: str) -> str:
    if host_path.startswith(SYSTEM_LIB_DIRS):
        return host_path
    return "/usr/lib/" + os.path.basename(host_path)


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


# ------------------------------------------------------------ distributions

def _req_name(req: str) -> tuple[str, str]:
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    marker = req.partition(";")[2].strip()
    return (name.group(1) if name else ""), marker


def _marker_applies(marker: str) -> bool:
    if not marker:
        return True
    if "extra" in marker:
        return False
    try:
        from packaging.markers import Marker

        return bool(Marker(marker).evaluate())
    except ImportError:
        return not re.search(r"Windows|win32|Darwin|darwin|cygwin", marker)
    except Exception:
        return True


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_closure(names: Iterable[str]) -> list[metadata.Distribution]:
    """The named distributions and everything they require (for this
    platform, no extras), each once."""
    out: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop(0)
        key = normalize(name)
        if key in out:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise RuntimeError(f"distribution {name} is not installed in {sys.prefix}") from None
        out[key] = dist
        for req in dist.requires or []:
            rname, marker = _req_name(req)
            if rname and _marker_applies(marker):
                todo.append(rname)
    return list(out.values())


def editable_source(dist: metadata.Distribution) -> str | None:
    """The source directory of an editable install, else None."""
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return None
    if not info.get("dir_info", {}).get("editable"):
        return None
    url = info.get("url", "")
    return url[len("file://"):] if url.startswith("file://") else None


def top_level_names(dist: metadata.Distribution) -> list[str]:
    names: set[str] = set()
    text = dist.read_text("top_level.txt")
    if text:
        names.update(n.strip() for n in text.split() if n.strip())
    for ep in dist.entry_points:
        names.add(ep.value.split(":")[0].split(".")[0].strip())
    names.add(normalize(dist.metadata["Name"]).replace("-", "_"))
    return sorted(names)


KEEP_DIST_INFO = ("METADATA", "entry_points.txt", "top_level.txt", "WHEEL")


def copy_dist(dist: metadata.Distribution, site: str, *, packages: Iterable[str] | None = None,
              info_only: bool = False) -> int:
    """Copy a distribution's files (its packages and a trimmed dist-info,
    enough for entry points) into ``site``. For an editable install the
    packages are copied from its source tree, not the .pth pointing at it.
    Returns the bytes copied."""
    total = 0
    name = dist.metadata["Name"]
    info_dir = f"{normalize(name).replace('-', '_')}-{dist.version}.dist-info"
    os.makedirs(os.path.join(site, info_dir), exist_ok=True)
    for fname in KEEP_DIST_INFO:
        text = dist.read_text(fname)
        if text is not None:
            with open(os.path.join(site, info_dir, fname), "w", encoding="utf-8") as f:
                f.write(text)
    if info_only:
        return total
    source = editable_source(dist)
    if source is not None:
        for top in packages or top_level_names(dist):
            src = os.path.join(source, top)
            if os.path.isdir(src):
                total += _copy_tree(src, os.path.join(site, top))
            elif os.path.isfile(src + ".py"):
                shutil.copyfile(src + ".py", os.path.join(site, top + ".py"))
                total += os.path.getsize(src + ".py")
        return total
    for f in dist.files or []:
        rel = str(f)
        if rel.startswith("..") or "__pycache__" in rel or ".dist-info/" in rel or rel.endswith(".pth"):
            continue
        src = str(dist.locate_file(f))
        if not os.path.isfile(src):
            continue
        dest = os.path.join(site, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(src, dest)
        total += os.path.getsize(dest)
    return total


def _copy_tree(src: str, dest: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", "tests", ".pytest_cache"))
        rel = os.path.relpath(dirpath, src)
        os.makedirs(os.path.join(dest, rel), exist_ok=True)
        for name in filenames:
            if name.endswith((".pyc", ".pyo")):
                continue
            target = os.path.join(dest, rel, name)
            shutil.copy2(os.path.join(dirpath, name), target)
            total += os.path.getsize(target)
    return total


# ------------------------------------------------------------ compiling

def compile_tree(root: str, guest_prefix: str, *, sourceless: bool, workers: int = 0) -> bool:
    """Byte-compile every .py under ``root`` (a staging directory that
    becomes ``guest_prefix`` in the guest). Unchecked-hash .pyc: the guest
    never stats a source to validate them (the sources do not change in an
    image). ``sourceless`` puts the .pyc where the .py was and deletes the
    sources (the initramfs)."""
    import py_compile

    ok = compileall.compile_dir(
        root, quiet=2, workers=workers, legacy=sourceless, stripdir=root, prependdir=guest_prefix,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if sourceless:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.endswith(".py") and os.path.exists(os.path.join(dirpath, name + "c")):
                    os.unlink(os.path.join(dirpath, name))
    return bool(ok)


@dataclass
class Collected:
    stdlib: int = 0
    site: int = 0
    modules: int = 0
    libs: list[str] = field(default_factory=list)
