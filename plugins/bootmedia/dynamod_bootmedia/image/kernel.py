"""Which kernel the images boot, and its modules."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

from dynamod_bootmedia.blockdev import natural_key

DEBIAN_KERNEL_PACKAGE = "linux-image-amd64"


@dataclass
class Kernel:
    image: str  # vmlinuz
    version: str  # "6.1.0-56-amd64" (empty when unknown)
    moddir: str | None  # /lib/modules/VERSION, when it exists

    def describe(self) -> str:
        mods = self.moddir or "no modules"
        return f"{self.image} ({self.version or 'version unknown'}; {mods})"


def bzimage_version(path: str) -> str:
    """The version string in a bzImage's setup header ("6.1.0-56-amd64")."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x4000)
            if head[0x202:0x206] != b"HdrS":
                return ""
            ptr = int.from_bytes(head[0x20E:0x210], "little")
            f.seek(ptr + 0x200)
            text = f.read(256)
    except OSError:
        return ""
    return text.split(b"\0", 1)[0].split(b" ", 1)[0].decode("ascii", "replace")


def find_kernel(image: str | None = None, modules: str | None = None, boot: str = "/boot",
                lib_modules: str = "/lib/modules") -> Kernel | None:
    """The kernel the user named, else the newest /boot/vmlinuz-* that has
    its modules in /lib/modules."""
    if image:
        if not os.path.isfile(image):
            raise FileNotFoundError(f"kernel {image} does not exist")
        version = bzimage_version(image)
        if not version:
            m = re.match(r"vmlinu[xz]-(.+)$", os.path.basename(image))
            version = m.group(1) if m else ""
        moddir = modules or (os.path.join(lib_modules, version) if version else None)
        if moddir and not os.path.isfile(os.path.join(moddir, "modules.dep")):
            if modules:
                raise FileNotFoundError(f"{modules} has no modules.dep")
            moddir = None
        return Kernel(image, version, moddir)
    candidates = []
    for path in glob.glob(os.path.join(boot, "vmlinuz-*")):
        version = os.path.basename(path)[len("vmlinuz-"):]
        moddir = os.path.join(lib_modules, version)
        if os.path.isfile(os.path.join(moddir, "modules.dep")):
            candidates.append(Kernel(path, version, moddir))
    if not candidates:
        return None
    return max(candidates, key=lambda k: natural_key(k.version))


def install_debian_kernel(say) -> None:  # type: ignore[no-untyped-def]
    """apt-get install linux-image-amd64 (as root). Its initramfs-tools
    hook builds an initrd we do not use; that is harmless."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(
            f"no kernel found in /boot: install Debian's {DEBIAN_KERNEL_PACKAGE} as root "
            f"(apt-get install {DEBIAN_KERNEL_PACKAGE}) or name one with --kernel"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say(f"no kernel in /boot: installing {DEBIAN_KERNEL_PACKAGE} with apt-get (once)")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", DEBIAN_KERNEL_PACKAGE]
    res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=False)
        res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-2000:])
        raise RuntimeError(f"apt-get install {DEBIAN_KERNEL_PACKAGE} failed")
