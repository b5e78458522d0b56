"""The kernel command line parameters of the boot media plugin (pure)."""

from __future__ import annotations

import pytest
from dynamod_bootmedia import bootopts
from dynamod_bootmedia.bootopts import BootOptionError, parse

from dynamod.init.phase_a import parse_cmdline


def opts(text: str) -> bootopts.BootOptions:
    return parse(parse_cmdline(text))


def test_defaults_for_a_disk_root():
    o = opts("console=ttyS0 root=/dev/vda")
    assert o.root == "/dev/vda"
    assert o.fstypes == ("ext4",)
    assert o.read_only is True
    assert o.rootflags == ""
    assert o.wait == bootopts.GRACE_SECONDS and not o.rootwait
    assert o.delay == 0
    assert not o.live and o.overlay and o.squashfs == "/live/root.squashfs"
    assert o.handled


def test_root_spellings_are_kept_verbatim():
    assert opts("root=LABEL=my-root").root == "LABEL=my-root"
    assert opts("root=UUID=0a1b-2C3d").root == "UUID=0a1b-2C3d"
    assert opts("root=PARTUUID=abcd-01").root == "PARTUUID=abcd-01"


def test_fstype_flags_and_rw():
    o = opts("root=/dev/vda rootfstype=xfs,ext4 rootflags=noatime,data=ordered rw")
    assert o.fstypes == ("xfs", "ext4")
    assert o.rootflags == "noatime,data=ordered"
    assert o.read_only is False
    assert opts("root=/dev/vda ro").read_only is True
    assert opts("root=/dev/vda ro rw").read_only is False


def test_rootwait_and_rootdelay():
    o = opts("root=/dev/vda rootwait")
    assert o.rootwait and o.wait == bootopts.ROOTWAIT_SECONDS
    assert opts("root=/dev/vda rootwait=7.5").wait == 7.5
    assert opts("root=/dev/vda rootdelay=3").delay == 3.0


@pytest.mark.parametrize("text, name", [
    ("root=/dev/vda rootwait=soon", "rootwait"),
    ("root=/dev/vda rootdelay=-1", "rootdelay"),
    ("root=/dev/vda rootdelay=inf", "rootdelay"),
    ("root=", "root"),
    ("dynamod.live dynamod.overlay=maybe", "dynamod.overlay"),
    ("dynamod.live dynamod.squashfs=../x", "dynamod.squashfs"),
])
def test_bad_values_name_the_parameter(text, name):
    with pytest.raises(BootOptionError, match=name):
        opts(text)


def test_live_parameters():
    o = opts("dynamod.live dynamod.media=LABEL=DYNAISO dynamod.squashfs=boot/fs.sqfs dynamod.overlay=0")
    assert o.live and o.handled
    assert o.media == "LABEL=DYNAISO"
    assert o.squashfs == "/boot/fs.sqfs"
    assert o.overlay is False
    assert opts("dynamod.live=0 quiet").live is False


def test_unknown_parameters_are_ignored_and_not_handled():
    o = opts("quiet splash console=ttyS0 init=/bin/sh foo.bar=1 dynamod.whatever=2")
    assert not o.handled
    assert o == bootopts.BootOptions()


def test_emergency_and_extra_modules():
    o = opts("root=/dev/vda dynamod.emergency=1 dynamod.modules=virtio_net,9p")
    assert o.emergency
    assert o.modules == ("virtio_net", "9p")
