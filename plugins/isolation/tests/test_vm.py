"""cgroup v2 with real controllers: boot the QEMU test VM (dynamod-bootmedia's
harness) with this plugin's test services and checks added to the image
(tests/vm/: services in etc/dynamod/services, checks in
usr/lib/dynamod/vmtest/isolation.py) and read the results from the console.

Limits written to the kernel's files, controllers enabled in the parents
only, memory/pids figures in status, pids-max refusing forks, and an OOM kill
failing the service with reason ``oom-killed`` under its restart policy.
Skipped where the VM cannot run (not root, QEMU or a kernel missing). The
images go to build/vm-isolation (or ``$DYNAMOD_VM_DIR-isolation``) and are
reused while their inputs are unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    from dynamod_bootmedia import vm
    from dynamod_bootmedia.testing import boot_test, build_test_images, sparse_copy, vm_skip_reason

    REASON = vm_skip_reason()
except ImportError as exc:  # dynamod-bootmedia not installed
    REASON = f"needs dynamod-bootmedia ({exc})"

pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

REPO = Path(__file__).resolve().parents[3]
VM_TREE = Path(__file__).resolve().parent / "vm"
OUT = Path(os.environ["DYNAMOD_VM_DIR"] + "-isolation") if os.environ.get("DYNAMOD_VM_DIR") \
    else REPO / "build" / "vm-isolation"
WAIT = "dynamod.test.wait=iso-limited,iso-forker"


@pytest.fixture(scope="module")
def vm_result(tmp_path_factory: pytest.TempPathFactory):
    try:
        images = build_test_images(OUT, add=[str(VM_TREE)], only=("initramfs", "disk"))
    except Exception as exc:
        pytest.fail(f"building the VM images failed: {exc} (log: {OUT / 'build.log'})")
    disk = tmp_path_factory.mktemp("iso-disk") / "disk.img"
    sparse_copy(images.disk, disk)
    result = boot_test(images, "isolation", root_by="label", disk=str(disk), append=[WAIT],
                       timeout=float(os.environ.get("DYNAMOD_VM_TIMEOUT", "240")),
                       until=vm.EMERGENCY)  # no use waiting for a shell nobody types into
    if result.timed_out or vm.EMERGENCY.search(result.console):
        pytest.fail(f"the VM did not finish its checks\n{result.tail()}")
    return result


def test_controllers_are_enabled_in_the_parents_only(vm_result) -> None:
    data = vm_result.check("isolation.controllers")
    assert {"memory", "pids", "cpu"} <= set(data["tree"])


def test_limits_reach_the_kernel(vm_result) -> None:
    data = vm_result.check("isolation.limits")
    assert data["files"]["memory.max"] == str(64 << 20)
    assert data["extra"]["memory-current"] > 0
    assert data["not-applied"] in ([], ["io-weight"])  # io.weight needs an io scheduler that has it


def test_pids_max_refuses_forks(vm_result) -> None:
    data = vm_result.check("isolation.pids_max")
    assert data["pids.current"] <= 8 and data["pids.events"]["max"] >= 1


def test_oom_kill_fails_the_service_and_its_policy_applies(vm_result) -> None:
    data = vm_result.check("isolation.oom")
    assert "oom-killed" in data["reason"] and data["restarts"] == 1
    hog = [(old, new) for name, old, new in vm_result.transitions() if name == "iso-hog"]
    assert ("running", "stopping") in hog and ("stopping", "restarting") in hog, hog
    assert "iso-hog: running -> stopping" in vm_result.console
    assert "dynamod-isolation: iso-hog: oom-killed" in vm_result.console


def test_services_are_born_in_their_cgroups_and_svmgr_goes_home(vm_result) -> None:
    data = vm_result.check("isolation.placement")
    assert "favordynmods" in data["mount-options"]
    assert set(data["svmgr"].values()) == {"0::/"}, data["svmgr"]
    assert data["services"] == {"iso-limited": "0::/dynamod/iso-limited.service",
                                "iso-forker": "0::/dynamod/iso-forker.service"}
