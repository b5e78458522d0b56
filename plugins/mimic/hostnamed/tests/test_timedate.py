"""timedate1's files and clock checks (the clock itself is never stepped here)."""

from __future__ import annotations

import os

import pytest
from dynamod_hostnamed import timedate
from dynamod_hostnamed.errors import AUTOMATIC_TIME_SYNC, INVALID_ARGS, BusError
from dynamod_hostnamed.fsroot import Root
from dynamod_hostnamed.timedate import TimeDate


def test_timezone_read_and_set(sysroot) -> None:
    td = TimeDate(Root(sysroot))
    assert td.timezone() == "Etc/UTC"
    td.set_timezone("Europe/Berlin")
    link = sysroot / "etc/localtime"
    assert os.readlink(link) == "../usr/share/zoneinfo/Europe/Berlin"
    assert link.resolve() == (sysroot / "usr/share/zoneinfo/Europe/Berlin").resolve()
    assert (sysroot / "etc/timezone").read_text() == "Europe/Berlin\n"  # Debian
    assert td.timezone() == "Europe/Berlin"


def test_timezone_without_debian_leaves_etc_timezone_alone(sysroot) -> None:
    (sysroot / "etc/debian_version").unlink()
    TimeDate(Root(sysroot)).set_timezone("Asia/Tokyo")
    assert not (sysroot / "etc/timezone").exists()


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus", "", "../../etc/passwd", "Europe//Berlin", "/Europe/Berlin", "Europe/Berlin/",
     "Europe", "zone1970.tab", "Europe/Ber lin", "Europe/./Berlin"],
)
def test_invalid_timezones_refused_and_nothing_changes(sysroot, zone: str) -> None:
    td = TimeDate(Root(sysroot))
    (sysroot / "usr/share/zoneinfo/Europe/Berl").mkdir()  # a directory is not a zone
    with pytest.raises(BusError) as exc:
        td.set_timezone(zone)
    assert exc.value.name == INVALID_ARGS
    assert os.readlink(sysroot / "etc/localtime") == "/usr/share/zoneinfo/Etc/UTC"
    assert not (sysroot / "etc/timezone").exists()


def test_timezone_fallbacks(sysroot) -> None:
    td = TimeDate(Root(sysroot))
    (sysroot / "etc/localtime").unlink()
    assert td.timezone() == "UTC"  # no /etc/localtime at all
    (sysroot / "etc/localtime").write_bytes(b"TZif copy")
    (sysroot / "etc/timezone").write_text("America/New_York\n")
    assert td.timezone() == "America/New_York"  # a copy: Debian's /etc/timezone
    (sysroot / "etc/localtime").unlink()
    (sysroot / "etc/localtime").symlink_to("/somewhere/else")
    assert td.timezone() == ""


def test_list_timezones(sysroot) -> None:
    zones = TimeDate(Root(sysroot)).list_timezones()
    assert zones == sorted(zones)
    assert "UTC" in zones and "Europe/Berlin" in zones and "America/New_York" in zones
    assert len(zones) > 300
    host = TimeDate(Root("/")).list_timezones()
    assert host == zones


def test_adjtime(sysroot) -> None:
    td = TimeDate(Root(sysroot))
    assert td.local_rtc() is False
    td.set_local_rtc(False)
    assert not (sysroot / "etc/adjtime").exists()  # no file already means UTC
    td.set_local_rtc(True)
    assert (sysroot / "etc/adjtime").read_text() == "0.0 0 0\n0\nLOCAL\n"
    assert td.local_rtc() is True
    (sysroot / "etc/adjtime").write_text("-0.5 1700000000 0.0\n1700000000\nLOCAL\n")
    td.set_local_rtc(False)
    assert (sysroot / "etc/adjtime").read_text() == "-0.5 1700000000 0.0\n1700000000\nUTC\n"
    assert td.local_rtc() is False


def test_set_time_refusals_do_not_touch_the_clock() -> None:
    before = timedate.now_usec()
    with pytest.raises(BusError) as exc:
        timedate.set_time(before, relative=False, ntp_active=True)
    assert exc.value.name == AUTOMATIC_TIME_SYNC
    for usec in (0, -1, -(2**63)):
        with pytest.raises(BusError) as exc:
            timedate.set_time(usec, relative=False, ntp_active=False)
        assert exc.value.name == INVALID_ARGS
    for usec in (2**63 - 1, -(2**63)):
        with pytest.raises(BusError) as exc:
            timedate.set_time(usec, relative=True, ntp_active=False)
        assert exc.value.text == "Time value overflow"


def test_relative_step_of_zero_goes_through_the_kernel() -> None:
    # The real path (adjtimex ADJ_SETOFFSET) with an offset of 0: the clock
    # keeps running exactly as before.
    before = timedate.now_usec()
    timedate.set_time(0, relative=True, ntp_active=False)
    after = timedate.now_usec()
    assert 0 <= after - before < 60_000_000
