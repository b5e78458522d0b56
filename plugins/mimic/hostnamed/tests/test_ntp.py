"""SetNTP / CanNTP / NTP against a real dynamod-svmgr."""

from __future__ import annotations

import asyncio

import pytest
from dynamod_hostnamed.errors import NO_NTP_SUPPORT, BusError
from dynamod_hostnamed.ntp import NtpControl


def test_no_ntp_service_known(tree, svmgr) -> None:
    mgr = svmgr()
    ntp = NtpControl(("chrony", "ntpsec"), mgr.socket)
    assert asyncio.run(ntp.status()) == (False, False)
    with pytest.raises(BusError) as exc:
        asyncio.run(ntp.set(True))
    assert exc.value.name == NO_NTP_SUPPORT
    assert "chrony, ntpsec" in exc.value.text
    asyncio.run(ntp.set(False))  # nothing to stop is fine


def test_start_and_stop_the_first_known_service(tree, svmgr) -> None:
    tree.simple("ntpsec", enabled=False)
    tree.simple("openntpd", enabled=False)
    mgr = svmgr()
    ntp = NtpControl(("chrony", "ntpsec", "openntpd"), mgr.socket)
    assert asyncio.run(ntp.status()) == (True, False)
    persists = "enablement" in mgr.status("ntpsec")  # an svmgr with EnableService
    asyncio.run(ntp.set(True))
    assert mgr.status("ntpsec")["state"] == "running"
    assert mgr.status("ntpsec")["enabled"] is persists
    assert mgr.status("openntpd")["state"] == "stopped"  # only the first
    assert asyncio.run(ntp.status()) == (True, True)
    asyncio.run(ntp.set(False))
    assert mgr.status("ntpsec")["state"] == "stopped"
    assert mgr.status("ntpsec")["enabled"] is False
    assert asyncio.run(ntp.status()) == (True, False)


def test_a_service_that_fails_to_start_is_a_clear_error(tree, svmgr) -> None:
    tree.simple("chrony", "exit 3", enabled=False, extra='[restart]\npolicy = "temporary"\n')
    mgr = svmgr()
    ntp = NtpControl(("chrony",), mgr.socket)
    with pytest.raises(BusError) as exc:
        asyncio.run(ntp.set(True))
    assert "Failed to start chrony" in exc.value.text


def test_svmgr_not_running(tmp_path) -> None:
    ntp = NtpControl(("chrony",), str(tmp_path / "nothing.sock"))
    assert asyncio.run(ntp.status()) == (False, False)
    with pytest.raises(BusError) as exc:
        asyncio.run(ntp.set(True))
    assert exc.value.name == NO_NTP_SUPPORT
