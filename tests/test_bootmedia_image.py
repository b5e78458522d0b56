"""The image builder's parts without building a whole image: the cpio
writer, the import tracer, the library and distribution helpers, kernel
discovery, the staging layout."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from dynamod_bootmedia.image import build, cpio, pyrt
from dynamod_bootmedia.image.kernel import bzimage_version, find_kernel
from dynamod_bootmedia.image.tracer import imported_names


def test_cpio_round_trip_with_device_nodes(tmp_path: Path):
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "usr" / "bin" / "tool").chmod(0o755)
    (root / "bin").symlink_to("usr/bin")
    (root / "empty").mkdir()
    (root / "odd").write_bytes(b"abc")  # lengths that need padding
    devs = [cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))]
    for compress in ("none", "gzip"):
        out = tmp_path / f"initrd-{compress}"
        size, count = cpio.write_archive(str(root), str(out), devs, compress=compress)
        data = out.read_bytes()
        assert (data[:2] == b"\x1f\x8b") == (compress == "gzip")
        entries = {e.name: e for e in cpio.read_archive(data)}
        assert count == len(entries) + 1  # + trailer
        assert entries["usr/bin/tool"].data == b"#!/bin/sh\necho hi\n"
        assert stat.S_IMODE(entries["usr/bin/tool"].mode) == 0o755
        assert stat.S_ISLNK(entries["bin"].mode) and entries["bin"].data == b"usr/bin"
        assert stat.S_ISDIR(entries["empty"].mode)
        assert entries["odd"].data == b"abc"
        assert stat.S_ISCHR(entries["dev/console"].mode) and entries["dev/console"].rdev == (5, 1)
        if compress == "none":
            assert size == len(data)
        else:
            assert size == len(gzip.decompress(data))


@pytest.mark.skipif(not os.path.exists("/usr/bin/cpio"), reason="needs GNU cpio to cross-check")
def test_cpio_archive_is_read_by_gnu_cpio(tmp_path: Path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("x" * 1001)
    out = tmp_path / "x.cpio"
    cpio.write_archive(str(root), str(out), [cpio.Entry("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3))])
    res = subprocess.run(["cpio", "-itv"], stdin=out.open("rb"), capture_output=True, text=True, check=True)
    assert "a/b/f" in res.stdout and "dev/null" in res.stdout


def test_imported_names_follow_lazy_relative_and_skip_type_checking():
    src = '''
from __future__ import annotations
import os.path
from typing import TYPE_CHECKING
from . import sibling
from .. import up
from .sub import thing
if TYPE_CHECKING:
    import heavy_typing_only
def f():
    import json
    from email import message_from_string
'''
    names = imported_names(src, "pkg.sub.mod", False)
    assert {"os", "os.path", "json", "email", "email.message_from_string", "pkg.sub.sibling", "pkg.up",
            "pkg.sub.sub", "pkg.sub.sub.thing"} <= names
    assert "heavy_typing_only" not in names
    assert imported_names(src, "pkg.sub", True) >= {"pkg.sub.sibling", "pkg.up"}


@pytest.fixture(scope="module")
def initramfs_trace() -> dict:
    first_party = [str(Path(p).parent) for p in (
        __import__("dynamod").__file__, __import__("dynamod_bootmedia").__file__)]
    return pyrt.trace({
        "roots": ["dynamod.init.main", "dynamod_bootmedia.plugin"],
        "first_party": first_party,
        "plugins": ["dynamod-bootmedia"],
        "exercise": ["plugin-host"],
        "exclude": list(pyrt.STDLIB_EXCLUDE),
    })["modules"]


def test_trace_of_phase_a_is_lean_and_complete(initramfs_trace: dict):
    mods = initramfs_trace
    # the entry point, its lazily imported modules, the plugin's boot path
    for name in ("dynamod.init.main", "dynamod.init.core", "dynamod.init.phase_a", "dynamod.init.syscalls",
                 "dynamod.plugins", "pluggy", "msgpack", "ctypes", "importlib.metadata", "encodings.utf_8",
                 "dynamod_bootmedia.mountroot", "dynamod_bootmedia.blockdev", "dynamod_bootmedia.loopdev",
                 "dynamod_bootmedia.kmod", "dynamod_bootmedia.spawn"):
        assert name in mods, name
    # not what PID 1 never runs: the service manager, the CLI, the builder
    for name in ("asyncio", "typer", "dynamod.svmgr.manager", "dynamod.ctl.app", "dynamod_bootmedia.image.build",
                 "dynamod_bootmedia.vm", "tkinter", "unittest", "subprocess"):
        assert name not in mods, name


def test_guest_paths_of_modules():
    rt = pyrt.Runtime.current()
    assert rt.guest_path_of_module("json.decoder", os.path.join(rt.stdlib, "json", "decoder.py")) == \
        f"/usr/lib/python{rt.version}/json/decoder.py"
    assert rt.guest_path_of_module("dynamod.init", "/src/dynamod/init/__init__.py") == \
        f"/usr/lib/python{rt.version}/site-packages/dynamod/init/__init__.py"
    assert rt.guest_path_of_module("msgpack._cmsgpack", "/venv/msgpack/_cmsgpack.cpython-311-x86_64-linux-gnu.so") \
        == f"/usr/lib/python{rt.version}/site-packages/msgpack/_cmsgpack.cpython-311-x86_64-linux-gnu.so"
    assert rt.guest_path_of_module("typing_extensions", "/venv/typing_extensions.py").endswith(
        "site-packages/typing_extensions.py")


def test_libraries_go_to_the_loader_default_path():
    assert pyrt.guest_lib_path("/lib/x86_64-linux-gnu/libc.so.6") == "/lib/x86_64-linux-gnu/libc.so.6"
    assert pyrt.guest_lib_path("/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0") == \
        "/usr/lib/libpython3.11.so.1.0"
    libs = pyrt.ldd(os.path.realpath(sys.executable))
    assert any("libc.so" in lib for lib in libs) and all(lib.startswith("/") for lib in libs)


def test_distribution_closure_and_editable_sources():
    names = {pyrt.normalize(d.metadata["Name"]) for d in pyrt.dist_closure(["dynamod", "dynamod-bootmedia"])}
    assert {"dynamod", "dynamod-bootmedia", "pluggy", "msgpack", "typer"} <= names
    assert "pytest" not in names and "colorama" not in names  # a Windows-only requirement
    from importlib import metadata

    src = pyrt.editable_source(metadata.distribution("dynamod-bootmedia"))
    assert src and os.path.isdir(os.path.join(src, "dynamod_bootmedia"))
    assert "dynamod_bootmedia" in pyrt.top_level_names(metadata.distribution("dynamod-bootmedia"))


def test_copy_dist_copies_the_package_not_the_pth(tmp_path: Path):
    from importlib import metadata

    pyrt.copy_dist(metadata.distribution("dynamod-bootmedia"), str(tmp_path))
    assert (tmp_path / "dynamod_bootmedia" / "mountroot.py").exists()
    info = next(tmp_path.glob("dynamod_bootmedia-*.dist-info"))
    assert "dynamod_bootmedia.plugin" in (info / "entry_points.txt").read_text()
    assert not list(tmp_path.glob("*.pth"))
    pyrt.copy_dist(metadata.distribution("pluggy"), str(tmp_path / "p"))
    assert (tmp_path / "p" / "pluggy" / "_hooks.py").exists()


def test_compile_tree_sourceless(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "m.py").write_text("def f():\n    return 42\n")
    assert pyrt.compile_tree(str(tmp_path), "/usr/lib/python3.11", sourceless=True)
    assert sorted(p.name for p in (tmp_path / "pkg").iterdir()) == ["__init__.pyc", "m.pyc"]
    res = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          "import pkg.m; print(pkg.m.f(), pkg.m.f.__code__.co_filename)", str(tmp_path)],
                         capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["42", "/usr/lib/python3.11/pkg/m.py"]


def test_kernel_discovery(tmp_path: Path):
    boot, mods = tmp_path / "boot", tmp_path / "modules"
    boot.mkdir()
    for v in ("6.1.0-9-amd64", "6.1.0-10-amd64", "6.5.0-1-amd64"):
        (boot / f"vmlinuz-{v}").write_bytes(b"k")
    for v in ("6.1.0-9-amd64", "6.1.0-10-amd64"):  # 6.5 has no modules
        (mods / v).mkdir(parents=True)
        (mods / v / "modules.dep").write_text("")
    k = find_kernel(boot=str(boot), lib_modules=str(mods))
    assert k is not None and k.version == "6.1.0-10-amd64" and k.moddir == str(mods / "6.1.0-10-amd64")
    named = find_kernel(str(boot / "vmlinuz-6.5.0-1-amd64"), lib_modules=str(mods))
    assert named.version == "6.5.0-1-amd64" and named.moddir is None
    assert find_kernel(boot=str(tmp_path / "none"), lib_modules=str(mods)) is None
    with pytest.raises(FileNotFoundError):
        find_kernel(str(boot / "missing"))


def test_bzimage_version_from_the_setup_header(tmp_path: Path):
    img = bytearray(0x4000)
    img[0x202:0x206] = b"HdrS"
    img[0x20E:0x210] = (0x3000 - 0x200).to_bytes(2, "little")
    img[0x3000:0x3030] = b"6.1.0-56-amd64 (debian-kernel@lists.debian.org)\0"
    (tmp_path / "bz").write_bytes(img)
    assert bzimage_version(str(tmp_path / "bz")) == "6.1.0-56-amd64"
    (tmp_path / "other").write_bytes(b"\0" * 100)
    assert bzimage_version(str(tmp_path / "other")) == ""


def test_stage_is_usrmerged(tmp_path: Path):
    st = build.Stage(str(tmp_path / "s"))
    assert st.host("/lib/x86_64-linux-gnu/libc.so.6") == str(tmp_path / "s" / "usr/lib/x86_64-linux-gnu/libc.so.6")
    assert st.host("/lib64/ld-linux-x86-64.so.2") == str(tmp_path / "s" / "usr/lib64/ld-linux-x86-64.so.2")
    assert st.host("/etc/passwd") == str(tmp_path / "s" / "etc/passwd")
    st.write("/sbin/x", "y", 0o755)
    assert os.readlink(tmp_path / "s" / "sbin") == "usr/sbin"
    assert (tmp_path / "s" / "usr" / "sbin" / "x").read_text() == "y"


def test_summary_lists_every_artifact():
    images = build.Images(out="/o", kernel="/boot/vmlinuz-x", kernel_version="x", initramfs="/o/i", disk="/o/d",
                          iso="/o/iso", uuid="u")
    images.sizes = {
        "kernel": {"bytes": 8 << 20, "version": "x"},
        "initramfs": {"bytes": 7 << 20, "uncompressed": 21 << 20, "entries": 500, "compression": "gzip",
                      "stdlib_modules": 140, "libs": 9},
        "modules": {"bytes": 6 << 20, "count": 28},
        "root": {"bytes": 64 << 20, "files": 2000, "stdlib_modules": 235},
        "disk": {"bytes": 139 << 20, "allocated": 64 << 20, "label": "dynaroot", "uuid": "u"},
        "squashfs": {"bytes": 18 << 20, "compression": "zstd"},
        "iso": {"bytes": 19 << 20, "label": "DYNAISO"},
    }
    text = build.summary(images)
    for word in ("kernel", "initramfs", "7.0 MiB", "disk.img", "LABEL=dynaroot", "root.squashfs", "root.iso",
                 "DYNAISO"):
        assert word in text


def test_root_etc_has_services_the_test_runner_and_added_trees(tmp_path: Path):
    services = tmp_path / "conf"
    (services / "services").mkdir(parents=True)
    (services / "services" / "web.toml").write_text('[service]\nname = "web"\nexec = ["/bin/true"]\n')
    extra = tmp_path / "extra"
    (extra / "etc" / "dynamod" / "services").mkdir(parents=True)
    (extra / "etc" / "dynamod" / "services" / "cgtest.toml").write_text("# another plugin's test service\n")
    (extra / "usr" / "lib" / "dynamod" / "vmtest").mkdir(parents=True)
    (extra / "usr" / "lib" / "dynamod" / "vmtest" / "cg.py").write_text("def check_x(ctx):\n    return {}\n")
    b = build.Builder(build.Options(out=str(tmp_path / "out"), services=[str(services)], add=[str(extra)]))
    st = build.Stage(str(tmp_path / "stage"))
    b.stage_etc(st)
    root = Path(st.root)
    names = sorted(p.name for p in (root / "etc" / "dynamod" / "services").iterdir())
    assert names == ["cgtest.toml", "vmtest.toml", "web.toml"]
    assert "dynamod_bootmedia.guest" in (root / "etc/dynamod/services/vmtest.toml").read_text()
    assert (root / "usr/lib/dynamod/vmtest/cg.py").exists()
    assert (root / "etc/hostname").read_text() == "dynamod\n"
    assert os.readlink(root / "etc" / "mtab") == "/proc/self/mounts"
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
