"""dynamod-bootmedia: Phase A (disk and live roots), boot images and a QEMU
test harness; see README.md of this distribution and docs/bootmedia.md."""
