"""Fixtures for dynamod-hostnamed: a --root tree that looks like a system."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # hostnamed_harness.py

ZONES = ("Europe/Berlin", "America/New_York", "Etc/UTC", "UTC", "Asia/Tokyo")


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    """A tree with a few real zoneinfo files, zone1970.tab, the keyboard
    model map, os-release and /etc/debian_version."""
    root = tmp_path / "root"
    zi = root / "usr/share/zoneinfo"
    for zone in ZONES:
        (zi / zone).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f"/usr/share/zoneinfo/{zone}", zi / zone)
    shutil.copyfile("/usr/share/zoneinfo/zone1970.tab", zi / "zone1970.tab")
    (root / "usr/share/systemd").mkdir(parents=True)
    shutil.copyfile("/usr/share/systemd/kbd-model-map", root / "usr/share/systemd/kbd-model-map")
    (root / "etc").mkdir()
    (root / "etc/debian_version").write_text("12.0\n")
    (root / "usr/lib").mkdir(exist_ok=True)
    (root / "usr/lib/os-release").write_text(
        'PRETTY_NAME="Test OS 1"\nCPE_NAME="cpe:/o:test:os:1"\nHOME_URL="https://test.example/"\n'
    )
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/Etc/UTC")
    return root


from dynamod.testing import manager_fixtures  # noqa: E402

tree, svmgr = manager_fixtures()


@pytest.fixture
def bus_files(tmp_path: Path) -> Path:
    """The shipped activation and policy files, written by install-bus-files."""
    from dynamod_hostnamed import busfiles
    from dynamod_hostnamed.fsroot import Root

    out = tmp_path / "busfiles"
    busfiles.install(Root(out))
    return out


@pytest.fixture
def make_machine(tmp_path: Path, sysroot: Path, bus_files: Path):
    """``make_machine(env=..., service_dirs=..., daemon=True, bridge=False)``:
    a namespace with the bus and the systemd1 stand-in (the real bridge with
    ``bridge=True``), and dynamod-hostnamed running on ``sysroot`` unless
    ``daemon=False``; see hostnamed_harness.Machine."""
    from hostnamed_harness import Machine

    made: list[Machine] = []

    def make(env: dict[str, str] | None = None, service_dirs: tuple[Path, ...] = (),
             daemon: bool = True, bridge: bool = False) -> Machine:  # fmt: skip
        m = Machine(tmp_path, sysroot, bus_files / "etc/dbus-1/system.d/dynamod-hostnamed.conf",
                    env=env, service_dirs=service_dirs)  # fmt: skip
        made.append(m)
        if bridge:
            m.start_bridge()
        else:
            m.start_sd1()
        if daemon:
            m.start_daemon()
        return m

    yield make
    for m in made:
        m.close()


@pytest.fixture
def machine(make_machine):
    """The default :func:`make_machine`."""
    return make_machine()
