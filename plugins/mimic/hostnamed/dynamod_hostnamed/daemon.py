"""The daemon: the three objects on one ObjectServer, the three names on
one system-bus connection, READY=1 to svmgr once they are owned."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket

from dynamod_mimic_common import Node, ObjectServer, claim_name, connect_system_bus

from dynamod_hostnamed import hostname1, locale1, timedate1
from dynamod_hostnamed.config import Config
from dynamod_hostnamed.fsroot import Root
from dynamod_hostnamed.hostinfo import HostInfo
from dynamod_hostnamed.localefiles import LocaleFiles
from dynamod_hostnamed.ntp import NtpControl
from dynamod_hostnamed.timedate import TimeDate

log = logging.getLogger("dynamod-hostnamed")


def build(root: Root, config: Config, socket_path: str | None = None) -> tuple[ObjectServer, timedate1.Timedate]:
    server = ObjectServer()
    server.add_object(hostname1.PATH, Node(hostname1.Hostname(HostInfo(root), server),
                                           (hostname1.HOSTNAME1,)))
    td = timedate1.Timedate(TimeDate(root), NtpControl(config.ntp_services, socket_path), server)
    server.add_object(timedate1.PATH, Node(td, (timedate1.TIMEDATE1,)))
    server.add_object(locale1.PATH, Node(locale1.Locale(LocaleFiles(root), server),
                                         (locale1.LOCALE1,)))
    return server, td


def notify_ready() -> None:
    """sd_notify READY=1 (``$NOTIFY_SOCKET``: a path or an @abstract name)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(b"READY=1", addr)
        except OSError as exc:
            log.warning("cannot notify readiness on %s: %s", addr, exc)


async def serve(root: Root, config: Config) -> int:
    server, td = build(root, config)
    bus = await connect_system_bus()
    # Answer before owning the names, so no call that races the claim is lost.
    server.attach(bus)
    watcher = asyncio.get_running_loop().create_task(td.watcher.run())
    # CanNTP/NTP are known before the first client asks (or svmgr is not there).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(td.watcher.synced.wait(), 15)
    for name in (hostname1.NAME, timedate1.NAME, locale1.NAME):
        await claim_name(bus, name)
    log.info("serving %s, %s and %s (root %s)", hostname1.NAME, timedate1.NAME, locale1.NAME, root.base)
    notify_ready()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lost = loop.create_task(bus.wait_for_disconnect())
    stopped = loop.create_task(stop.wait())
    await asyncio.wait({lost, stopped}, return_when=asyncio.FIRST_COMPLETED)
    watcher.cancel()
    if lost.done():
        log.error("lost the system bus connection")
        return 1
    bus.disconnect()
    return 0
