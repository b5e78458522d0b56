"""Entry point of the dynamod-bootmedia plugin (entry-point group ``dynamod``).

Implements ``dynamod_mount_root``: init's Phase A calls it in the initramfs
to mount the real root (a disk, or a live ISO's squashfs under an overlay)
on the new root. Imports stay inside the hook: every process that loads
plugins (svmgr, dynamodctl plugins) loads this module.
"""

from __future__ import annotations

import dynamod


@dynamod.hookimpl
def dynamod_mount_root(cmdline: dict[str, str], newroot: str) -> bool | None:
    from dynamod_bootmedia import bootopts

    opts = bootopts.parse(cmdline)
    if not opts.handled:
        return None
    from dynamod_bootmedia.mountroot import mount_root

    mount_root(opts, newroot)
    return True
