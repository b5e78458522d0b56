"""hostname1's files and systemd's validation rules, under a --root tree."""

from __future__ import annotations

import os

import pytest
from dynamod_hostnamed.errors import INVALID_ARGS, BusError
from dynamod_hostnamed.fsroot import Root
from dynamod_hostnamed.hostinfo import (
    CHASSIS,
    HostInfo,
    check_chassis,
    check_deployment,
    check_icon,
    check_location,
    check_pretty,
    hostname_is_valid,
)


@pytest.mark.parametrize(
    "name",
    ["a", "web-01", "my_host", "Host", "a.b.c", "x" * 64, "0", "foo-.bar", "-lead", "a.b-c_d"],
)
def test_valid_hostnames(name: str) -> None:
    assert hostname_is_valid(name)


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, ".a", "a.", "a..b", "a b", "ä", "a/b", "a\nb", "a:b", "-" * 0 + "a*"],
)
def test_invalid_hostnames(name: str) -> None:
    assert not hostname_is_valid(name)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (check_chassis, "toaster"),
        (check_chassis, "Laptop"),
        (check_deployment, "two words"),
        (check_deployment, "tab\there"),
        (check_location, "line\nbreak"),
        (check_pretty, "bell\x07"),
        (check_pretty, "x" * 256),
        (check_icon, "a/b"),
        (check_icon, ".."),
    ],
)
def test_refused_values_are_invalid_args(check, value: str) -> None:
    with pytest.raises(BusError) as exc:
        check(value)
    assert exc.value.name == INVALID_ARGS
    assert exc.value.text


def test_accepted_values() -> None:
    for c in CHASSIS:
        check_chassis(c)
    check_deployment("production")
    check_location("Left Rack, 2nd Shelf — Berlin")
    check_pretty("Lennart's Computer")
    check_icon("computer-laptop")
    for check in (check_chassis, check_deployment, check_location, check_pretty, check_icon):
        check("")  # empty means "unset"


def test_static_hostname_file(tmp_path) -> None:
    info = HostInfo(Root(tmp_path))
    assert info.static_hostname() == ""
    info.set_static_hostname("box")
    assert (tmp_path / "etc/hostname").read_text() == "box\n"
    (tmp_path / "etc/hostname").write_text("# a comment\n\n  other  \n")
    assert info.static_hostname() == "other"
    (tmp_path / "etc/hostname").write_text("not valid!\n")
    assert info.static_hostname() == ""
    info.set_static_hostname("")
    assert not (tmp_path / "etc/hostname").exists()
    with pytest.raises(BusError):
        info.set_static_hostname("bad name")
    assert not (tmp_path / "etc/hostname").exists()


def test_machine_info_keeps_other_lines_and_mode(tmp_path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    mi = etc / "machine-info"
    mi.write_text("# keep me\nHARDWARE_VENDOR=Acme\n")
    mi.chmod(0o600)
    info = HostInfo(Root(tmp_path))
    info.set_machine_info("PRETTY_HOSTNAME", "Lennart's Tablet")
    info.set_machine_info("CHASSIS", "tablet")
    info.set_machine_info("LOCATION", "Berlin, Germany")
    assert mi.read_text() == (
        "# keep me\nHARDWARE_VENDOR=Acme\n"
        "PRETTY_HOSTNAME=\"Lennart's Tablet\"\nCHASSIS=tablet\nLOCATION=\"Berlin, Germany\"\n"
    )
    assert os.stat(mi).st_mode & 0o777 == 0o600
    assert info.chassis() == "tablet"
    assert info.icon_name() == "computer-tablet"
    assert info.hardware_vendor() == "Acme"
    for key in ("PRETTY_HOSTNAME", "CHASSIS", "LOCATION"):
        info.set_machine_info(key, "")
    assert mi.read_text() == "# keep me\nHARDWARE_VENDOR=Acme\n"
    info.set_machine_info("HARDWARE_VENDOR", "")
    assert mi.read_text() == "# keep me\n"
    # no stray temporaries
    assert sorted(p.name for p in etc.iterdir()) == ["machine-info"]


def test_os_release_and_default_hostname(tmp_path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nHOME_URL="https://www.debian.org/"\n'
        "CPE_NAME=cpe:/o:debian:debian_linux:12\nDEFAULT_HOSTNAME=debby\n"
    )
    info = HostInfo(Root(tmp_path))
    osr = info.os_release()
    assert osr.pretty_name == "Debian GNU/Linux 12 (bookworm)"
    assert osr.home_url == "https://www.debian.org/"
    assert osr.cpe_name == "cpe:/o:debian:debian_linux:12"
    assert info.default_hostname() == "debby"
    # /etc/os-release wins over /usr/lib/os-release, and only one is read
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text("PRETTY_NAME=Other\nDEFAULT_HOSTNAME=bad_name!\n")
    assert info.os_release().pretty_name == "Other"
    assert info.os_release().home_url == ""
    assert info.default_hostname() == "localhost"


def test_effective_hostname_priority(tmp_path) -> None:
    info = HostInfo(Root(tmp_path))
    assert info.effective_hostname() == "localhost"
    info.transient = "dhcp-name"
    assert info.effective_hostname() == "dhcp-name"
    info.set_static_hostname("static-name")
    assert info.effective_hostname() == "static-name"


def test_machine_id(tmp_path) -> None:
    info = HostInfo(Root(tmp_path))
    assert info.machine_id() == b""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    assert info.machine_id() == bytes.fromhex("0123456789abcdef0123456789abcdef")
    (tmp_path / "etc/machine-id").write_text("uninitialized\n")
    assert info.machine_id() == b""
    assert len(HostInfo.boot_id()) == 16
