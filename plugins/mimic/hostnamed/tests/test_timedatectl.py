"""The real timedatectl (systemd 252) against dynamod-hostnamed.

The machine's clock is never stepped: SetTime is exercised with a relative
step of 0 (the real adjtimex path) and with every refusal; where the real
client has to send an absolute time, it sends "now", so that even a broken
refusal could not move the clock by more than the call's latency.
"""

from __future__ import annotations

import os

import pytest

ZONE_LINK = "etc/localtime"


def test_status_and_show(machine) -> None:
    out = machine.run("timedatectl", "status", check=True).stdout
    assert "Time zone: Etc/UTC (UTC, +0000)" in out
    assert "RTC in local TZ: no" in out
    assert "NTP service: n/a" in out  # no NTP service known to svmgr
    show = machine.run("timedatectl", "show", check=True).stdout.splitlines()
    assert "Timezone=Etc/UTC" in show
    assert "LocalRTC=no" in show
    assert "CanNTP=no" in show
    assert "NTP=no" in show
    assert any(line.startswith("TimeUSec=") for line in show)


def test_set_timezone(machine) -> None:
    machine.run("timedatectl", "set-timezone", "Europe/Berlin", check=True)
    link = machine.root / ZONE_LINK
    assert os.readlink(link) == "../usr/share/zoneinfo/Europe/Berlin"
    assert (machine.root / "etc/timezone").read_text() == "Europe/Berlin\n"
    out = machine.run("timedatectl", "status", check=True).stdout
    assert "Time zone: Europe/Berlin (CE" in out  # CET or CEST, computed by the client
    assert machine.run("timedatectl", "show", "-p", "Timezone", "--value", check=True).stdout == "Europe/Berlin\n"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "Europe/"])
def test_invalid_timezone(machine, zone: str) -> None:
    out = machine.run("timedatectl", "set-timezone", zone)
    assert out.returncode == 1
    assert "Failed to set time zone" in out.stderr
    assert f"Invalid or not installed time zone '{zone}'" in out.stderr
    assert os.readlink(machine.root / ZONE_LINK) == "/usr/share/zoneinfo/Etc/UTC"


def test_list_timezones(machine) -> None:
    zones = machine.run("timedatectl", "list-timezones", check=True).stdout.splitlines()
    assert "Europe/Berlin" in zones and "America/New_York" in zones and "UTC" in zones
    assert zones == sorted(zones)


def test_set_local_rtc(machine) -> None:
    machine.run("timedatectl", "set-local-rtc", "1", check=True)
    assert (machine.root / "etc/adjtime").read_text().splitlines()[2] == "LOCAL"
    assert "LocalRTC=yes" in machine.run("timedatectl", "show", check=True).stdout
    machine.run("timedatectl", "set-local-rtc", "0", check=True)
    assert (machine.root / "etc/adjtime").read_text().splitlines()[2] == "UTC"


def test_set_ntp_without_an_ntp_service(machine) -> None:
    out = machine.run("timedatectl", "set-ntp", "true")
    assert out.returncode == 1
    assert "NTP not supported" in out.stderr
    machine.run("timedatectl", "set-ntp", "false", check=True)


def test_set_ntp_starts_and_stops_the_configured_service(make_machine, tree, svmgr, sysroot) -> None:
    tree.simple("chrony", enabled=False)
    mgr = svmgr()
    (sysroot / "etc/dynamod").mkdir()
    (sysroot / "etc/dynamod/hostnamed.toml").write_text('[ntp]\nservices = ["ntpd", "chrony"]\n')
    m = make_machine(env={"DYNAMOD_SOCKET": mgr.socket})
    assert "CanNTP=yes" in m.run("timedatectl", "show", check=True).stdout
    m.run("timedatectl", "set-ntp", "true", check=True)
    assert mgr.status("chrony")["state"] == "running"
    show = m.run("timedatectl", "show", check=True).stdout.splitlines()
    assert "NTP=yes" in show
    # SetTime is refused while NTP is on: the real client and a relative call
    out = m.run("timedatectl", "set-time", "now")
    assert out.returncode == 1
    assert "Automatic time synchronization is enabled" in out.stderr
    out = m.run("busctl", "--", "call", "org.freedesktop.timedate1", "/org/freedesktop/timedate1",
                "org.freedesktop.timedate1", "SetTime", "xbb", "0", "true", "false")  # fmt: skip
    assert out.returncode == 1 and "Automatic time synchronization is enabled" in out.stderr
    # a stop from outside is seen (svmgr's state events)
    mgr.request("StopService", {"name": "chrony"})
    m_show = lambda: m.run("timedatectl", "show", check=True).stdout.splitlines()  # noqa: E731
    mgr.wait_for(lambda: "NTP=no" in m_show(), 60, "NTP=no after an outside stop")
    m.run("timedatectl", "set-ntp", "true", check=True)
    m.run("timedatectl", "set-ntp", "false", check=True)
    assert mgr.status("chrony")["state"] == "stopped"
    assert "NTP=no" in m_show()


def test_set_time_real_path_with_a_zero_step(machine) -> None:
    out = machine.run("busctl", "--", "call", "org.freedesktop.timedate1", "/org/freedesktop/timedate1",
                      "org.freedesktop.timedate1", "SetTime", "xbb", "0", "true", "false")  # fmt: skip
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    ("usec", "relative", "message"),
    [("0", "false", "Invalid absolute time"), ("-5", "false", "Invalid absolute time"),
     ("9223372036854775807", "true", "Time value overflow")],
)  # fmt: skip
def test_set_time_invalid_arguments(machine, usec: str, relative: str, message: str) -> None:
    out = machine.run("busctl", "--", "call", "org.freedesktop.timedate1", "/org/freedesktop/timedate1",
                      "org.freedesktop.timedate1", "SetTime", "xbb", usec, relative, "false")  # fmt: skip
    assert out.returncode == 1
    assert message in out.stderr


def test_set_time_bad_date_is_refused_by_the_client(machine) -> None:
    out = machine.run("timedatectl", "set-time", "not a time")
    assert out.returncode == 1
    assert "Failed to parse time specification" in out.stderr


@pytest.mark.parametrize(
    "argv",
    [["set-timezone", "Asia/Tokyo"], ["set-local-rtc", "1"], ["set-ntp", "true"], ["set-time", "now"]],
)
def test_unprivileged_callers_are_refused(machine, argv: list[str]) -> None:
    out = machine.run("timedatectl", *argv, nobody=True)
    assert out.returncode == 1
    assert "Access denied" in out.stderr, out.stderr
    assert os.readlink(machine.root / ZONE_LINK) == "/usr/share/zoneinfo/Etc/UTC"
    assert not (machine.root / "etc/adjtime").exists()
    assert machine.run("timedatectl", "show", nobody=True, check=True).stdout
