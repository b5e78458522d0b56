"""``dynamod-sd1bridge``: the daemon (foreground).

It creates /run/systemd/system (the clients' "booted with systemd" test),
serves peer-to-peer D-Bus on /run/systemd/private for root (so root's
systemctl works with no dbus-daemon), and owns org.freedesktop.systemd1 on
the system bus whenever there is one, reconnecting when the bus comes or
goes. Everything it answers comes from dynamod-svmgr's control socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from dynamod_mimic_common import (
    BusUnavailable,
    ObjectServer,
    PeerServer,
    claim_name,
    connect_system_bus,
    system_bus_address,
)

from dynamod.ipc.client import default_socket_path

from . import __version__
from .manager import Bridge
from .model import Model

log = logging.getLogger("dynamod.sd1bridge")

BUS_NAME = "org.freedesktop.systemd1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="dynamod-sd1bridge",
        description="Serve org.freedesktop.systemd1 from dynamod-svmgr, for systemctl.")
    p.add_argument("--socket", default=None,
                   help="svmgr control socket (default: $DYNAMOD_SOCKET or /run/dynamod/control.sock)")
    p.add_argument("--config-dir", default=os.environ.get("DYNAMOD_CONFIG_DIR", "/etc/dynamod"),
                   help="dynamod's config directory, for FragmentPath (default /etc/dynamod)")
    p.add_argument("--bus-address", default=None,
                   help="system bus address (default: $DBUS_SYSTEM_BUS_ADDRESS or the standard socket)")
    p.add_argument("--no-bus", action="store_true", help="do not use the system bus at all")
    p.add_argument("--private-socket", default="/run/systemd/private",
                   help="peer-to-peer socket for root's systemctl (default /run/systemd/private)")
    p.add_argument("--no-private-socket", action="store_true", help="do not serve the private socket")
    p.add_argument("--run-dir", default="/run/systemd",
                   help="where to create system/ (the clients' booted-with-systemd test)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--version", action="version", version=f"dynamod-sd1bridge {__version__}")
    return p.parse_args(argv)


async def _bus_loop(server: ObjectServer, address: str) -> None:
    delay = 0.1
    while True:
        try:
            bus = await connect_system_bus(address)
        except BusUnavailable as exc:
            log.debug("%s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        server.attach(bus)
        try:
            await claim_name(bus, BUS_NAME)
        except BusUnavailable as exc:
            log.error("%s; retrying", exc)
            server.detach(bus)
            bus.disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        delay = 0.1
        log.info("owning %s on %s", BUS_NAME, address)
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()
        server.detach(bus)
        log.warning("lost the system bus at %s; reconnecting", address)


async def run(args: argparse.Namespace) -> int:
    model = Model(args.socket or default_socket_path(), args.config_dir)
    server = ObjectServer()
    Bridge(server, model)
    await model.start()
    # Nothing system-wide before there is a service manager to answer for:
    # /run/systemd/system makes every client (and sd_booted()) believe in a
    # systemd, and a name owner that cannot answer would make them fail.
    if not await model.wait_connected(None):
        return 1
    try:
        os.makedirs(os.path.join(args.run_dir, "system"), mode=0o755, exist_ok=True)
    except OSError as exc:
        log.error("cannot create %s/system: %s", args.run_dir, exc.strerror)
        await model.close()
        return 1
    peer = None
    if not args.no_private_socket:
        peer = PeerServer(server, args.private_socket, allow=lambda uid: uid == 0)
        try:
            await peer.start()
        except OSError as exc:
            log.error("cannot listen on %s: %s", args.private_socket, exc.strerror or exc)
            await model.close()
            return 1
        log.info("serving peer-to-peer D-Bus on %s", args.private_socket)
    tasks = []
    if not args.no_bus:
        tasks.append(asyncio.get_running_loop().create_task(
            _bus_loop(server, args.bus_address or system_bus_address())))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for t in tasks:
        t.cancel()
    if peer is not None:
        await peer.close()
    for link in server.links:
        with contextlib.suppress(Exception):
            link.bus.disconnect()
    await model.close()
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="dynamod-sd1bridge: %(levelname)s: %(message)s")
    sys.exit(asyncio.run(run(args)))
