"""``dynamod-vm`` (and ``dynamod-mkimage`` = ``dynamod-vm build``): build the
boot images and run them in QEMU.

    dynamod-vm build [--out DIR] [--kernel VMLINUZ] ...     build (cached)
    dynamod-vm run --disk|--iso [--append ARGS] [...]       boot, console here
    dynamod-vm test [--disk|--iso] [...]                    boot with the test
                                                            runner, report, off
"""

from __future__ import annotations

import argparse
import os
import sys


def _build_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("images")
    g.add_argument("--out", default=os.environ.get("DYNAMOD_VM_DIR", "build/vm"),
                   help="build directory (default build/vm, or $DYNAMOD_VM_DIR)")
    g.add_argument("--kernel", help="the kernel to boot (default: the newest /boot/vmlinuz-*; "
                   "Debian's linux-image-amd64 is installed when there is none)")
    g.add_argument("--modules", help="that kernel's modules directory (default /lib/modules/VERSION)")
    g.add_argument("--plugin", action="append", dest="plugins",
                   help="plugin distribution for the root fs (repeatable; default: all installed)")
    g.add_argument("--services", action="append",
                   help="config directory with services/ and supervisors/ (repeatable; default examples/demo)")
    g.add_argument("--add", action="append", default=[],
                   help="directory tree copied onto the root fs (e.g. another plugin's test service)")
    g.add_argument("--label", default="dynaroot", help="ext4 label (default dynaroot)")
    g.add_argument("--initramfs-compression", choices=("gzip", "none"), default="gzip")
    g.add_argument("--squashfs-compression", choices=("zstd", "xz", "gzip", "lz4"), default="zstd")
    g.add_argument("--full-stdlib", action="store_true", help="root fs: the whole stdlib, not the traced part")
    g.add_argument("--no-strip", action="store_true", help="do not strip the shared libraries")
    g.add_argument("--force", action="store_true", help="rebuild even when the inputs did not change")
    g.add_argument("--keep-stage", action="store_true", help="keep the staging trees")


def _options(args: argparse.Namespace, only: tuple[str, ...] | None = None):  # type: ignore[no-untyped-def]
    from dynamod_bootmedia.image.build import ARTIFACTS, Options

    return Options(
        out=args.out, kernel=args.kernel, modules=args.modules, plugins=args.plugins,
        services=args.services, add=args.add, label=args.label,
        initramfs_compression=args.initramfs_compression,
        squashfs_compression=args.squashfs_compression, full_stdlib=args.full_stdlib,
        strip=not args.no_strip, force=args.force, keep_stage=args.keep_stage,
        only=only or ARTIFACTS,
    )


def build(args: argparse.Namespace, only: tuple[str, ...] | None = None):  # type: ignore[no-untyped-def]
    from dynamod_bootmedia.image.build import Builder, summary

    images = Builder(_options(args, only)).build()
    print(summary(images), file=sys.stderr)
    return images


def _vm_args(p: argparse.ArgumentParser) -> None:
    media = p.add_mutually_exclusive_group()
    media.add_argument("--disk", action="store_true", help="boot the ext4 disk image (default)")
    media.add_argument("--iso", action="store_true", help="boot the live ISO")
    p.add_argument("--root-by", choices=("label", "uuid", "dev"), default="label",
                   help="disk: how root= names the disk (default label)")
    p.add_argument("--ro", action="store_true", help="disk: leave the root read-only (no rw)")
    p.add_argument("--no-overlay", action="store_true", help="iso: dynamod.overlay=0 (read-only root)")
    p.add_argument("--append", action="append", default=[], help="extra kernel command line words")
    p.add_argument("--memory", default="512", help="guest memory in MiB (default 512)")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("DYNAMOD_VM_TIMEOUT", 120)),
                   help="test: seconds before the boot is killed (default 120)")
    p.add_argument("--no-build", action="store_true", help="use the images as they are")
    p.add_argument("--persist", action="store_true",
                   help="disk: keep the guest's writes in the disk image (default: discard them, "
                   "so the built image stays as built)")


def _boot_spec(args: argparse.Namespace, images):  # type: ignore[no-untyped-def]
    from dynamod_bootmedia import vm

    media = "iso" if args.iso else "disk"
    return vm.BootSpec(
        images=images, media=media, root_by=args.root_by, read_only=args.ro,
        overlay=not args.no_overlay, append=[w for a in args.append for w in a.split()],
        memory=args.memory, snapshot=not args.persist,
    )


def _images(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dynamod_bootmedia.image.build import Images

    if args.no_build:
        images = Images.load(args.out)
        if images is None:
            sys.exit(f"dynamod-vm: no images in {args.out}: run dynamod-vm build")
        return images
    return build(args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dynamod-vm", description="Build dynamod boot images and run them in QEMU (TCG).")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the initramfs, the ext4 disk image and the live ISO")
    _build_args(b)
    b.add_argument("--only", action="append", choices=("initramfs", "disk", "iso"))
    r = sub.add_parser("run", help="boot in QEMU with the console on this terminal (quit: ctrl-a x)")
    _build_args(r)
    _vm_args(r)
    t = sub.add_parser("test", help="boot with the in-VM test runner, show the results, power off")
    _build_args(t)
    _vm_args(t)
    t.add_argument("--log", help="write the console log here")
    t.add_argument("--quiet", action="store_true", help="do not echo the console")
    args = p.parse_args(argv)
    try:
        if args.cmd == "build":
            build(args, tuple(args.only) if args.only else None)
            return 0
        from dynamod_bootmedia import vm

        images = _images(args)
        spec = _boot_spec(args, images)
        if args.cmd == "run":
            return vm.run_interactive(spec)
        return vm.run_test_cli(spec, timeout=args.timeout, log=args.log, echo=not args.quiet)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from dynamod_bootmedia.image.build import BuildError
        from dynamod_bootmedia.vm import VmError

        if isinstance(exc, BuildError | VmError | FileNotFoundError | RuntimeError):
            print(f"dynamod-vm: {exc}", file=sys.stderr)
            return 1
        raise


def mkimage_main(argv: list[str] | None = None) -> int:
    """dynamod-mkimage: the same as dynamod-vm build."""
    return main(["build", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
