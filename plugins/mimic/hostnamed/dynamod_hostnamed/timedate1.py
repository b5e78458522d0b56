"""org.freedesktop.timedate1 on /org/freedesktop/timedate1 (org.freedesktop.timedate1(5))."""

from __future__ import annotations

from dynamod_mimic_common import CallContext, Interface, Method, ObjectServer, Prop

from dynamod_hostnamed import timedate
from dynamod_hostnamed.bushelp import setter
from dynamod_hostnamed.ntp import NtpControl, NtpWatcher
from dynamod_hostnamed.timedate import TimeDate

PATH = "/org/freedesktop/timedate1"
NAME = "org.freedesktop.timedate1"
_RTC_SINCE_EPOCH = "/sys/class/rtc/rtc0/since_epoch"


class Timedate:
    def __init__(self, td: TimeDate, ntp: NtpControl, server: ObjectServer) -> None:
        self.td = td
        self.ntp_control = ntp
        self.server = server
        self.watcher = NtpWatcher(ntp, on_change=lambda: self.changed("NTP"))

    def changed(self, *names: str) -> None:
        self.server.properties_changed(PATH, TIMEDATE1, self, names)


def rtc_usec() -> int:
    """The RTC's time (read only, from sysfs); 0 when there is no RTC
    (timedatectl then prints "RTC time: n/a")."""
    try:
        with open(_RTC_SINCE_EPOCH, encoding="ascii") as f:
            return int(f.read().strip()) * 1_000_000
    except (OSError, ValueError):
        return 0


@setter("setting the system time")
def set_time(t: Timedate, ctx: CallContext, usec: int, relative: bool, interactive: bool) -> None:
    timedate.set_time(usec, relative, t.watcher.ntp)


@setter("setting the time zone")
def set_timezone(t: Timedate, ctx: CallContext, zone: str, interactive: bool) -> None:
    if zone == t.td.timezone() and t.td.timezone_valid(zone):
        return
    t.td.set_timezone(zone)
    t.changed("Timezone")


@setter("setting the RTC mode")
def set_local_rtc(t: Timedate, ctx: CallContext, local: bool, fix_system: bool,
                  interactive: bool) -> None:  # fmt: skip
    if local == t.td.local_rtc():
        return
    t.td.set_local_rtc(local)
    t.changed("LocalRTC")


@setter("switching network time synchronization")
async def set_ntp(t: Timedate, ctx: CallContext, enable: bool, interactive: bool) -> None:
    await t.ntp_control.set(enable)
    # Answer with NTP already showing the new state, not after the next event.
    t.watcher.update(await t.ntp_control.states())


def list_timezones(t: Timedate, ctx: CallContext) -> list[str]:
    return t.td.list_timezones()


TIMEDATE1 = Interface(
    NAME,
    methods=[
        Method("SetTime", "xbb", "", set_time, ("usec_utc", "relative", "interactive")),
        Method("SetTimezone", "sb", "", set_timezone, ("timezone", "interactive")),
        Method("SetLocalRTC", "bbb", "", set_local_rtc, ("local_rtc", "fix_system", "interactive")),
        Method("SetNTP", "bb", "", set_ntp, ("use_ntp", "interactive")),
        Method("ListTimezones", "", "as", list_timezones, (), ("timezones",)),
    ],
    props=[
        Prop("Timezone", "s", lambda t: t.td.timezone()),
        Prop("LocalRTC", "b", lambda t: t.td.local_rtc()),
        Prop("CanNTP", "b", lambda t: t.watcher.can_ntp, emits="false"),
        Prop("NTP", "b", lambda t: t.watcher.ntp),
        Prop("NTPSynchronized", "b", lambda t: timedate.ntp_synchronized(), emits="false"),
        Prop("TimeUSec", "t", lambda t: timedate.now_usec(), emits="false"),
        Prop("RTCTimeUSec", "t", lambda t: rtc_usec(), emits="false"),
    ],
)
