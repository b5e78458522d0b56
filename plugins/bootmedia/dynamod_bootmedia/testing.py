"""Helpers for VM tests (this plugin's, and other plugins' that add their
own test service and checks to the image).

    images = build_test_images("build/vm")            # cached by inputs
    result = boot_test(images, "disk-label", root_by="label")
    result.check("ready")

Another plugin adds a tree with ``etc/dynamod/services/NAME.toml`` and
``usr/lib/dynamod/vmtest/NAME.py`` (functions ``check_*(ctx)``) through
``add=[tree]``; its images are built in their own directory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from dynamod_bootmedia import vm
from dynamod_bootmedia.image.build import Builder, Images, Options, Progress

TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "mke2fs": "e2fsprogs",
    "mksquashfs": "squashfs-tools",
    "xorriso": "xorriso",
    "busybox": "busybox-static",
    "debugfs": "e2fsprogs",
    "dumpe2fs": "e2fsprogs",
}
DEFAULT_TIMEOUT = float(os.environ.get("DYNAMOD_VM_TIMEOUT", "120"))


def which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.access(p, os.X_OK)), None
    )


def vm_skip_reason() -> str | None:
    """Why VM tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "VM tests need root (the kernel in /boot is root-only; images keep root-owned files)"
    missing = sorted({pkg for tool, pkg in TOOLS.items() if which(tool) is None})
    if missing:
        return f"VM tests need {', '.join(missing)} (apt-get install {' '.join(missing)}; scripts/test does)"
    return None


def build_test_images(out: str | os.PathLike[str], **options: Any) -> Images:
    """Build (or reuse) the images; progress goes to a log in ``out``."""
    out = str(out)
    os.makedirs(out, exist_ok=True)
    log_path = os.path.join(out, "build.log")
    with open(log_path, "w", encoding="utf-8") as log:
        def say(msg: str) -> None:
            log.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
            log.flush()

        return Builder(Options(out=out, **options), Progress(say)).build()


def sparse_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy a sparse disk image without filling its holes."""
    with open(src, "rb") as f, open(dst, "wb") as g:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                data = os.lseek(f.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole = os.lseek(f.fileno(), data, os.SEEK_HOLE)
            f.seek(data)
            g.seek(data)
            left = hole - data
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    break
                g.write(chunk)
                left -= len(chunk)
            pos = hole
        g.truncate(size)


def boot_test(images: Images, name: str, *, timeout: float = DEFAULT_TIMEOUT, until: Any = None,
              test: bool = True, **spec: Any) -> vm.BootResult:
    """Boot with the test runner (``dynamod.test=NAME``); the console log
    goes to ``<out>/logs/NAME.log`` and the boot times to NAME.json."""
    logs = Path(images.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    boot_spec = vm.BootSpec(images=images, **spec)
    if test:
        boot_spec.append = [*boot_spec.append, f"dynamod.test={name}"]
    result = vm.boot(boot_spec, timeout=timeout, log_path=str(logs / f"{name}.log"), until=until)
    record = {"name": name, "cmdline": " ".join(boot_spec.cmdline()), "exit_code": result.exit_code,
              "timed_out": result.timed_out, "timings": result.timings()}
    (logs / f"{name}.json").write_text(json.dumps(record, indent=2))
    return result
