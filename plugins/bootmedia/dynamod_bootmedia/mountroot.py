"""Phase A's boot media part: make the devices appear, find the root and
mount it on the new root (dynamod-init then moves /proc, /sys, /dev, /run
into it, empties the initramfs and switches root).

Disk root: ``root=`` names the device; it is mounted read-only unless the
command line says ``rw``.

Live root: the live media (``dynamod.media=``, or the first block device
holding an ISO 9660 / UDF file system with the squashfs file) is mounted
read-only on /run/dynamod/live/medium, its squashfs file is attached to a
loop device and mounted on /run/dynamod/live/rootfs, and an overlay with
its upper and work directories on a tmpfs (/run/dynamod/live/rw) is mounted
on the new root; ``dynamod.overlay=0`` binds the squashfs read-only
instead. Everything lives under /run, which init *moves* into the new root
before it deletes the initramfs' files, so the media, the squashfs and the
writable layer stay mounted (and visible under /run/dynamod/live) for the
life of the system; the deletion does not cross into them either, as they
are other file systems.

Every failure raises :class:`MountError` with the reason; init prints it on
the console and starts the emergency shell. Nothing waits without a bound.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dynamod_bootmedia import blockdev, kmod, loopdev, spawn
from dynamod_bootmedia.bootopts import LIVE_MEDIA_FSTYPES, POLL_INTERVAL, BootOptions

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MNT_DETACH = 2
LIVE_SUBDIR = "dynamod/live"


class MountError(Exception):
    """The root cannot be mounted; the message says why."""


def _default_log(message: str) -> None:
    from dynamod.init.log import log

    log(message)


def _default_mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    from dynamod.init import syscalls

    syscalls.mount(source, target, fstype, flags, data)


def _default_umount(target: str, flags: int = 0) -> None:
    from dynamod.init import syscalls

    syscalls.umount(target, flags)


@dataclass
class Env:
    """Where things are and how to act; the tests replace parts of it."""

    tree: blockdev.DevTree = field(default_factory=lambda: blockdev.DevTree(blkid=blockdev.run_blkid))
    run: str = "/run"
    moddir: str | None = None  # default /lib/modules/$(uname -r)
    load_modules: bool = True
    mdev: bool = True
    log: Callable[[str], None] = _default_log
    mount: Callable[..., None] = _default_mount
    umount: Callable[..., None] = _default_umount
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    # What the live media may be (the tests add ext4: their host kernel
    # may lack iso9660).
    media_fstypes: tuple[str, ...] = LIVE_MEDIA_FSTYPES
    mounted: list[str] = field(default_factory=list)  # by us, in order

    @property
    def live_dir(self) -> str:
        return os.path.join(self.run, LIVE_SUBDIR)

    def do_mount(self, source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
        os.makedirs(target, exist_ok=True)
        self.mount(source, target, fstype, flags, data)
        self.mounted.append(target)

    def undo(self) -> None:
        """Unmount what this attempt mounted (a retry starts clean)."""
        while self.mounted:
            target = self.mounted.pop()
            try:
                self.umount(target, MNT_DETACH)
            except OSError:
                pass


_said_no_modules = False


def _why(exc: OSError) -> str:
    """The reason alone (syscalls.mount's messages repeat source and target)."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def mount_points() -> list[str]:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            return [ln.split()[1].replace("\\040", " ") for ln in f if len(ln.split()) > 2]
    except OSError:
        return []


# ------------------------------------------------------------------ devices

def prepare_devices(env: Env, opts: BootOptions) -> None:
    """devtmpfs on /dev (init mounts it; make sure), the kernel modules this
    boot path needs, then ``mdev -s`` when busybox has it."""
    global _said_no_modules
    dev = env.tree.dev
    if dev == "/dev" and "/dev" not in mount_points():
        try:
            env.mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755")
        except OSError as exc:
            env.log(f"cannot mount devtmpfs on /dev: {_why(exc)}")
    if env.load_modules:
        moddir = env.moddir or os.path.join("/lib/modules", os.uname().release)
        if os.path.isfile(os.path.join(moddir, "modules.dep")):
            names = kmod.boot_modules(opts.live, opts.fstypes, opts.modules)
            started = env.monotonic()
            loaded = kmod.load_modules(names, moddir, log=env.log)
            env.log(f"loaded {len(loaded)} kernel modules in {env.monotonic() - started:.2f}s"
                    + (f" ({', '.join(loaded)})" if loaded else ""))
        elif not _said_no_modules:
            _said_no_modules = True
            env.log(f"no kernel modules at {moddir}: relying on the drivers built into the kernel")
    if env.mdev:
        mdev = spawn.find("mdev")  # busybox's applet link, when it has mdev
        if mdev:
            status, _out = spawn.run([mdev, "-s"], timeout=30)
            if status != 0:
                env.log(f"mdev -s {'timed out' if status is None else f'exited {status}'}")


def wait_for_device(spec: str, opts: BootOptions, env: Env, what: str) -> str:
    """Poll every 250 ms until ``spec`` names a device, for at most
    ``opts.wait`` seconds."""
    deadline = env.monotonic() + opts.wait
    announced = False
    while True:
        env.tree.cache.clear()
        found = blockdev.resolve(spec, env.tree)
        if found:
            return found
        if env.monotonic() >= deadline:
            hint = "" if opts.rootwait else " (slow device? add rootwait or rootwait=SECONDS)"
            raise MountError(
                f"{what} {spec} not found after {opts.wait:g}s{hint}; "
                f"block devices: {blockdev.describe_devices(env.tree)}"
            )
        if not announced:
            env.log(f"waiting up to {opts.wait:g}s for {what} {spec}")
            announced = True
        env.sleep(POLL_INTERVAL)


def _supported_filesystems() -> set[str]:
    try:
        with open("/proc/filesystems", encoding="ascii") as f:
            return {ln.split()[-1] for ln in f if ln.split()}
    except OSError:
        return set()


def _mount_any(env: Env, device: str, target: str, fstypes: tuple[str, ...], flags: int, data: str | None) -> str:
    errors = []
    for fstype in fstypes:
        try:
            env.do_mount(device, target, fstype, flags, data)
            return fstype
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EROFS) and not flags & MS_RDONLY:
                # A write-protected device: mount it read-only, as the kernel does.
                try:
                    env.do_mount(device, target, fstype, flags | MS_RDONLY, data)
                    env.log(f"{device} is write-protected: mounted read-only")
                    return fstype
                except OSError as exc2:
                    exc = exc2
            errors.append(f"{fstype}: {_why(exc)}")
    known = _supported_filesystems()
    missing = [t for t in fstypes if known and t not in known]
    hint = f" (the kernel does not know {', '.join(missing)}: module missing?)" if missing else ""
    raise MountError(f"cannot mount {device} on {target}: {'; '.join(errors)}{hint}")


# --------------------------------------------------------------------- root

def mount_root(opts: BootOptions, newroot: str, env: Env | None = None) -> str:
    """Mount the root ``opts`` describes on ``newroot``; returns a one-line
    description for the log. Raises MountError."""
    env = env or Env()
    _clean_previous_attempt(env, newroot)
    started = env.monotonic()
    prepare_devices(env, opts)
    if opts.delay:
        env.log(f"rootdelay: waiting {opts.delay:g}s")
        env.sleep(opts.delay)
    try:
        what = mount_live(opts, newroot, env) if opts.live else mount_disk(opts, newroot, env)
    except BaseException:
        env.undo()
        raise
    env.log(f"root mounted in {env.monotonic() - started:.2f}s: {what}")
    return what


def _clean_previous_attempt(env: Env, newroot: str) -> None:
    """After a failed attempt and the emergency shell, mounts may be left
    on the new root or under the live directory: detach them."""
    if env.tree.dev != "/dev":
        return
    stale = [m for m in mount_points()
             if m == newroot or m.startswith(newroot.rstrip("/") + "/") or m.startswith(env.live_dir + "/")]
    for target in reversed(stale):
        try:
            env.umount(target, MNT_DETACH)
        except OSError:
            pass


def mount_disk(opts: BootOptions, newroot: str, env: Env) -> str:
    assert opts.root
    device = wait_for_device(opts.root, opts, env, "root device")
    flags = MS_RDONLY if opts.read_only else 0
    fstype = _mount_any(env, device, newroot, opts.fstypes, flags, opts.rootflags or None)
    return f"{device} ({opts.root}, {fstype}, {'ro' if opts.read_only else 'rw'}) on {newroot}"


def _ensure_run(env: Env) -> None:
    """/run must be its own file system so init moves it into the new root
    (init mounts a tmpfs there; make sure)."""
    if env.run == "/run" and "/run" not in mount_points():
        os.makedirs("/run", exist_ok=True)
        env.mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")  # kept: init moves it


def mount_live(opts: BootOptions, newroot: str, env: Env) -> str:
    _ensure_run(env)
    live = env.live_dir
    medium, rootfs, rw = (os.path.join(live, d) for d in ("medium", "rootfs", "rw"))
    if opts.media:
        device = wait_for_device(opts.media, opts, env, "live media")
        _mount_any(env, device, medium, env.media_fstypes, MS_RDONLY, None)
        if not os.path.isfile(medium + opts.squashfs):
            raise MountError(f"live media {device} ({opts.media}) has no {opts.squashfs}")
    else:
        device = _find_live_media(opts, env, medium)
    image = medium + opts.squashfs
    try:
        loop = loopdev.attach(image, read_only=True, dev=env.tree.dev)
    except OSError as exc:
        raise MountError(f"cannot attach {image} to a loop device: {_why(exc)}") from exc
    with loop:
        _mount_any(env, loop.node, rootfs, ("squashfs",), MS_RDONLY, None)
    if opts.overlay:
        env.do_mount("tmpfs", rw, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
        os.makedirs(os.path.join(rw, "upper"), mode=0o755, exist_ok=True)
        os.makedirs(os.path.join(rw, "work"), mode=0o755, exist_ok=True)
        data = f"lowerdir={rootfs},upperdir={rw}/upper,workdir={rw}/work"
        try:
            env.do_mount("overlay", newroot, "overlay", 0, data)
        except OSError as exc:
            raise MountError(f"cannot mount the overlay on {newroot}: {_why(exc)}") from exc
        layer = f"overlay (writable layer on tmpfs {rw})"
    else:
        try:
            env.do_mount(rootfs, newroot, None, MS_BIND)
            env.mount("none", newroot, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        except OSError as exc:
            raise MountError(f"cannot bind {rootfs} on {newroot}: {_why(exc)}") from exc
        # A read-only root still needs a writable /tmp; it moves with the root.
        if os.path.isdir(os.path.join(newroot, "tmp")):
            try:
                env.do_mount("tmpfs", os.path.join(newroot, "tmp"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
            except OSError as exc:
                env.log(f"cannot mount a tmpfs on /tmp: {_why(exc)}")
        layer = "read-only squashfs (dynamod.overlay=0; tmpfs on /tmp)"
    return f"live {device}:{opts.squashfs} via {loop.node}, {layer} on {newroot}"


def _find_live_media(opts: BootOptions, env: Env, medium: str) -> str:
    """The first block device with an ISO 9660 / UDF file system holding
    the squashfs file; CD-ROMs first. Polls like wait_for_device."""
    deadline = env.monotonic() + opts.wait
    announced = False
    tried: dict[str, str] = {}
    while True:
        env.tree.cache.clear()
        names = blockdev.block_devices(env.tree)
        names.sort(key=lambda n: (not n.startswith("sr"), blockdev.natural_key(n)))
        for name in names:
            tags = blockdev.probe(env.tree, name)
            if tags.get("TYPE") not in (None, *env.media_fstypes):
                tried[name] = tags["TYPE"]
                continue
            device = blockdev.device_node(env.tree, name)
            if device is None:
                continue
            try:
                _mount_any(env, device, medium, env.media_fstypes, MS_RDONLY, None)
            except MountError:
                tried[name] = f"not {'/'.join(env.media_fstypes)}"
                continue
            if os.path.isfile(medium + opts.squashfs):
                return device
            tried[name] = f"no {opts.squashfs}"
            env.umount(medium, MNT_DETACH)
            env.mounted.remove(medium)
        if env.monotonic() >= deadline:
            seen = "; ".join(f"{n}: {why}" for n, why in tried.items()) or "no block devices with media"
            raise MountError(f"no live media with {opts.squashfs} found after {opts.wait:g}s ({seen}); "
                             "name it with dynamod.media=")
        if not announced:
            env.log(f"waiting up to {opts.wait:g}s for live media with {opts.squashfs}")
            announced = True
        env.sleep(POLL_INTERVAL)
