"""Fixtures for dynamod-hostnamed: a --root tree that looks like a system."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
