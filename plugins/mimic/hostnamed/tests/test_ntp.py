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
    # a program that cannot be spawned fails its job however loaded the machine is
    tree.service("chrony", '[service]\nname = "chrony"\nexec = ["/nonexistent/chronyd"]\n'
                 'enabled = false\n[restart]\npolicy = "temporary"\n')  # fmt: skip
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


def test_watcher_follows_svmgr_across_its_restart(tree, svmgr, tmp_path) -> None:
    from dynamod_hostnamed.ntp import NtpWatcher

    from dynamod.testing import wait_until

    tree.simple("chrony", enabled=False)
    runtime = tmp_path / "rt"
    mgr = svmgr(runtime_dir=runtime)
    changes: list[bool] = []

    async def run() -> None:
        watcher = NtpWatcher(NtpControl(("chrony",), mgr.socket), on_change=lambda: changes.append(watcher.ntp))
        task = asyncio.get_running_loop().create_task(watcher.run())
        loop = asyncio.get_running_loop()

        async def until(pred, what: str) -> None:
            await loop.run_in_executor(None, lambda: wait_until(pred, what, timeout=60))

        await until(lambda: watcher.can_ntp, "CanNTP")
        await loop.run_in_executor(None, lambda: mgr.request("StartService", {"name": "chrony"}))
        await until(lambda: watcher.ntp, "NTP after a start from outside")
        await loop.run_in_executor(None, mgr.stop)
        await until(lambda: not watcher.can_ntp, "CanNTP false while svmgr is gone")
        await loop.run_in_executor(None, mgr.start)
        await until(lambda: watcher.can_ntp and not watcher.ntp, "CanNTP again after the restart")
        task.cancel()

    asyncio.run(run())
    assert changes[:2] == [True, False]
