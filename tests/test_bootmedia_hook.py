"""The dynamod_mount_root hook: through the plugin host in-process, and
really mounting (a disk root by LABEL / UUID, a live root from an ISO with
squashfs + overlay, read-only, failures) inside a private mount namespace,
with loop devices standing in for the VM's disks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import dynamod_bootmedia.plugin as plugin
import pytest
from dynamod_bootmedia import mountroot
from dynamod_bootmedia.bootopts import BootOptionError

from dynamod.plugins import make_plugin_host


def host():
    return make_plugin_host(load_entrypoints=False, plugins=[("dynamod-bootmedia", plugin)])


def test_hook_returns_none_for_command_lines_it_does_not_handle():
    h = host()
    assert h.hook.dynamod_mount_root(cmdline={"quiet": "", "console": "ttyS0"}, newroot="/newroot") is None
    assert h.hook.dynamod_mount_root(cmdline={"dynamod.live": "0"}, newroot="/newroot") is None


def test_hook_parses_and_mounts(monkeypatch):
    calls = []
    monkeypatch.setattr(mountroot, "mount_root", lambda opts, newroot: calls.append((opts, newroot)) or "x")
    h = host()
    assert h.hook.dynamod_mount_root(cmdline={"root": "LABEL=r", "rw": "", "rootwait": "3"},
                                     newroot="/nr") is True
    opts, newroot = calls[0]
    assert (opts.root, opts.read_only, opts.wait, newroot) == ("LABEL=r", False, 3.0, "/nr")


def test_hook_raises_with_the_reason_for_a_bad_parameter():
    with pytest.raises(BootOptionError, match="rootdelay"):
        host().hook.dynamod_mount_root(cmdline={"root": "/dev/vda", "rootdelay": "x"}, newroot="/nr")


def test_entry_point_is_found_when_installed():
    h = make_plugin_host()
    assert "dynamod-bootmedia" in h.info, h.problems
    assert h.info["dynamod-bootmedia"].hooks == ["dynamod_mount_root"]
    assert h.info["dynamod-bootmedia"].distribution == "dynamod-bootmedia"


# ---------------------------------------------------------------- real mounts

TOOLS = ("unshare", "mke2fs", "mksquashfs", "xorriso")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in TOOLS) or not os.path.exists("/dev/loop-control"),
    reason="real mounts need root, loop devices and " + ", ".join(TOOLS),
)

SCRIPT = textwrap.dedent("""
    import json, os, sys
    from dynamod.init.phase_a import parse_cmdline
    from dynamod_bootmedia import bootopts, loopdev, mountroot
    spec = json.loads(sys.argv[1])
    run, newroot = spec["run"], spec["newroot"]
    said = []
    env = mountroot.Env(run=run, load_modules=False, mdev=False, log=said.append,
                        media_fstypes=tuple(spec["media_fstypes"]))
    loops = [loopdev.attach(p, read_only=ro) for p, ro in spec["attach"]]
    cmdline = spec["cmdline"].replace("@LOOP0@", loops[0].node if loops else "")
    out = {"loops": [l.node for l in loops]}
    try:
        out["what"] = mountroot.mount_root(bootopts.parse(parse_cmdline(cmdline)), newroot, env)
    except mountroot.MountError as exc:
        out["error"] = str(exc)
    mounts = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, target, fstype, options = line.split()[:4]
            if target.startswith(spec["base"]):
                mounts[target] = [dev, fstype, options.split(",")[0]]
    out["mounts"] = mounts
    probe = os.path.join(newroot, "written-by-test")
    try:
        with open(probe, "w") as f:
            f.write("hello")
        out["writable"] = True
    except OSError as exc:
        out["writable"] = False
        out["write_error"] = exc.strerror
    try:
        with open(os.path.join(newroot, "tmp", "t"), "w") as f:
            f.write("t")
        out["tmp_writable"] = True
    except OSError:
        out["tmp_writable"] = False
    out["init"] = os.path.exists(os.path.join(newroot, "sbin", "dynamod-init"))
    out["upper"] = sorted(os.listdir(os.path.join(run, "dynamod/live/rw/upper"))) if os.path.isdir(
        os.path.join(run, "dynamod/live/rw/upper")) else None
    out["said"] = said
    print(json.dumps(out))
""")


def kernel_has(fstype: str) -> bool:
    with open("/proc/filesystems") as f:
        return fstype in f.read().split()


# The live media is an ISO; where the test machine's kernel has no iso9660
# (and cannot load modules), an ext4 image with the same layout stands in.
ISO_OK = kernel_has("iso9660")
MEDIA_FSTYPES = ["iso9660", "udf"] if ISO_OK else ["iso9660", "udf", "ext4"]


def in_namespace(tmp_path: Path, cmdline: str, attach: list[Path], rw: bool = False) -> dict:
    run, newroot = tmp_path / "run", tmp_path / "newroot"
    run.mkdir(exist_ok=True)
    newroot.mkdir(exist_ok=True)
    spec = {"run": str(run), "newroot": str(newroot), "base": str(tmp_path), "cmdline": cmdline,
            "attach": [[str(p), not rw] for p in attach], "media_fstypes": MEDIA_FSTYPES}
    res = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SCRIPT, json.dumps(spec)],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def root_tree(tmp_path: Path) -> Path:
    src = tmp_path / "rootsrc"
    for d in ("sbin", "etc", "tmp", "run", "proc", "sys", "dev"):
        (src / d).mkdir(parents=True, exist_ok=True)
    (src / "sbin" / "dynamod-init").write_text("#!/bin/sh\n")
    (src / "sbin" / "dynamod-init").chmod(0o755)
    (src / "etc" / "hostname").write_text("test\n")
    return src


@pytest.fixture(scope="module")
def ext4_image(tmp_path_factory) -> tuple[Path, str, str]:
    tmp = tmp_path_factory.mktemp("ext4")
    label, fs_uuid = f"dm-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    img = tmp / "root.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-U", fs_uuid, "-d", str(root_tree(tmp)),
                    str(img), "8M"], check=True)
    return img, label, fs_uuid


@pytest.fixture(scope="module")
def live_iso(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("live")
    iso_root = tmp / "iso"
    (iso_root / "live").mkdir(parents=True)
    subprocess.run(["mksquashfs", str(root_tree(tmp)), str(iso_root / "live" / "root.squashfs"), "-noappend",
                    "-quiet", "-no-progress"], check=True, stdout=subprocess.DEVNULL)
    iso = tmp / "root.iso"
    if ISO_OK:
        subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "DYNTEST", "-R", "-J", "-o", str(iso),
                        str(iso_root)], check=True, stderr=subprocess.DEVNULL)
    else:
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "DYNTEST", "-d", str(iso_root), str(iso), "16M"],
                       check=True)
    return iso


@needs_root
def test_disk_root_by_label_is_mounted_read_only(tmp_path, ext4_image):
    img, label, _ = ext4_image
    out = in_namespace(tmp_path, f"root=LABEL={label} rootwait=10", [img])
    assert "error" not in out, out
    assert out["mounts"][str(tmp_path / "newroot")][1:] == ["ext4", "ro"]
    assert out["init"] and out["writable"] is False and out["write_error"] == "Read-only file system"
    assert f"LABEL={label}" in out["what"]


@needs_root
def test_disk_root_by_uuid_rw_and_by_device(tmp_path, ext4_image):
    img, _, fs_uuid = ext4_image
    copy = tmp_path / "rw.img"
    shutil.copyfile(img, copy)
    out = in_namespace(tmp_path, f"root=UUID={fs_uuid.upper()} rw rootwait=10", [copy], rw=True)
    assert out["mounts"][str(tmp_path / "newroot")][1:] == ["ext4", "rw"], out
    assert out["writable"]
    # rw on a write-protected device: mounted read-only, as the kernel does
    out = in_namespace(tmp_path, f"root=UUID={fs_uuid} rw", [img])
    assert out["mounts"][str(tmp_path / "newroot")][1:] == ["ext4", "ro"], out
    assert any("write-protected" in m for m in out["said"])
    out = in_namespace(tmp_path, "root=@LOOP0@ rootfstype=xfs,ext4", [img])
    assert out["mounts"][str(tmp_path / "newroot")][0] == out["loops"][0], out


@needs_root
def test_broken_root_says_why(tmp_path):
    out = in_namespace(tmp_path, "root=LABEL=no-such-label-here rootwait=0.5", [])
    assert "root device LABEL=no-such-label-here not found after 0.5s" in out["error"]
    assert "block devices:" in out["error"]
    assert out["mounts"] == {}
    out = in_namespace(tmp_path, "root=/dev/null rootfstype=ext4", [])
    assert "cannot mount /dev/null" in out["error"]


@needs_root
def test_live_root_overlay_on_tmpfs(tmp_path, live_iso):
    out = in_namespace(tmp_path, "dynamod.live dynamod.media=@LOOP0@ rootwait=10", [live_iso])
    assert "error" not in out, out
    m = out["mounts"]
    live = tmp_path / "run" / "dynamod" / "live"
    assert m[str(live / "medium")][1:] == ["iso9660" if ISO_OK else "ext4", "ro"]
    assert m[str(live / "rootfs")][1:] == ["squashfs", "ro"]
    assert m[str(live / "rw")][1] == "tmpfs"
    assert m[str(tmp_path / "newroot")][1:] == ["overlay", "rw"]
    assert out["writable"] and out["init"]
    assert "written-by-test" in out["upper"]  # the writes land on the tmpfs


@needs_root
def test_live_root_found_by_scanning_and_read_only_without_overlay(tmp_path, live_iso):
    # Scanning tries every iso9660/udf device; with the ext4 stand-in it
    # would try the machine's own disks too, so name the media then.
    media = "" if ISO_OK else "dynamod.media=@LOOP0@"
    out = in_namespace(tmp_path, f"dynamod.live dynamod.overlay=0 rootwait=10 {media}", [live_iso])
    assert "error" not in out, out
    assert out["mounts"][str(tmp_path / "newroot")][1:] == ["squashfs", "ro"]
    assert out["writable"] is False and out["tmp_writable"] is True
    assert out["upper"] is None


@needs_root
def test_live_failure_unmounts_what_it_mounted(tmp_path, live_iso):
    out = in_namespace(tmp_path, "dynamod.live dynamod.media=@LOOP0@ dynamod.squashfs=/nope.sfs", [live_iso])
    assert "has no /nope.sfs" in out["error"]
    assert out["mounts"] == {}
