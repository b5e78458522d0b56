"""In a QEMU VM booting dynamod-init as PID 1: ``hostnamectl set-hostname``
on the booted system (real dbus-daemon, D-Bus activation through svmgr)
survives a reboot (dynamod-init sets the hostname from /etc/hostname)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from dynamod_bootmedia.testing import boot_test, build_test_images, sparse_copy, vm_skip_reason
from dynamod_hostnamed import busfiles
from dynamod_hostnamed.fsroot import Root
from dynamod_mimic_common.testing import PrivateBus

REASON = vm_skip_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

HERE = Path(__file__).parent
REPO = HERE.parents[3]
OUT = Path(os.environ.get("DYNAMOD_VM_DIR", REPO / "build" / "vm")) / "hostnamed"
BINARIES = ("/usr/bin/dbus-daemon", "/usr/bin/hostnamectl")
NEW_NAME = "renamed-by-hostnamectl"

BUS_SOCKET = "/run/dbus/system_bus_socket"
# The image's bus. /run/systemd/system is made here, before any client runs:
# dynamod itself does not make it (yet).
DBUS_SERVICE = """\
[service]
name = "dbus"
exec = ["/bin/sh", "-c", "mkdir -p /run/dbus /run/systemd/system && exec /usr/bin/dbus-daemon --config-file=/etc/dbus-1/dynamod-test-system.conf --nofork --nopidfile --nosyslog"]
"""


def _libraries(binaries: tuple[str, ...]) -> set[str]:
    out = subprocess.run(["ldd", *binaries], capture_output=True, text=True, check=True).stdout
    return {m[1] for m in re.finditer(r"=> (/\S+)", out)}


def _bus_config(scratch: Path) -> str:
    """The tests' system-bus configuration, listening where the image's
    clients look (the file PrivateBus writes, not started here)."""
    scratch.mkdir()
    bus = PrivateBus(policy_dirs=("/etc/dbus-1/system.d",), directory=str(scratch),
                     service_dirs=("/usr/local/share/dbus-1/system-services",))  # fmt: skip
    return bus.config.read_text().replace(str(bus.socket), BUS_SOCKET)


def _add_tree(tmp: Path) -> Path:
    tree = tmp / "add"
    for path in {*BINARIES, *_libraries(BINARIES)}:
        real = os.path.realpath(path)
        # the image is usr-merged: /lib is a link to /usr/lib
        guest = path if path.startswith("/usr/") else "/usr" + path
        dest = tree / guest.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, dest)
    (tree / "etc/dbus-1").mkdir(parents=True)
    (tree / "etc/dbus-1/dynamod-test-system.conf").write_text(_bus_config(tmp / "bus"))
    busfiles.install(Root(tree), python="/usr/bin/python3")
    (tree / "etc/dynamod/services").mkdir(parents=True)
    (tree / "etc/dynamod/services/dbus.toml").write_text(DBUS_SERVICE)
    checks = tree / "usr/lib/dynamod/vmtest"
    checks.mkdir(parents=True)
    shutil.copy(HERE / "vm_guest/hostnamed_checks.py", checks / "hostnamed_checks.py")
    return tree


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    try:
        return build_test_images(OUT, add=[str(_add_tree(tmp_path_factory.mktemp("vm")))])
    except Exception as exc:
        pytest.fail(f"building the VM images failed: {exc} (log: {OUT / 'build.log'})")


def test_set_hostname_survives_a_reboot(images, tmp_path) -> None:
    disk = tmp_path / "disk.img"
    sparse_copy(images.disk, disk)
    first = boot_test(images, "hostnamed-set", disk=str(disk), timeout=300,
                      append=[f"dynamod.test.sethostname={NEW_NAME}", "dynamod.test.wait=dbus"])  # fmt: skip
    data = first.check("hostnamed_checks.hostnamectl")
    assert data["kernel_before"] == "dynamod"  # the image's /etc/hostname
    assert data["hostnamectl"] == NEW_NAME
    assert data["kernel"] == NEW_NAME
    assert data["etc_hostname"] == NEW_NAME
    assert "running" in data["service"]  # activated through svmgr
    second = boot_test(images, "hostnamed-reboot", disk=str(disk), timeout=300,
                       append=["dynamod.test.wait=dbus"])  # fmt: skip
    data = second.check("hostnamed_checks.hostnamectl")
    assert data["kernel_before"] == NEW_NAME  # set by dynamod-init at boot
    assert data["hostnamectl"] == NEW_NAME
    assert f"hostname set to {NEW_NAME}" in second.console
