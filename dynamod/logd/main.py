"""dynamod-logd: the log daemon (docs/logd.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from dynamod.cmdline import parse as parse_command_line
from dynamod.ipc.server import ControlServer
from dynamod.logd.config import LogdConfigError, load
from dynamod.logd.query import Query
from dynamod.logd.record import Record, boot_id
from dynamod.logd.store import Store
from dynamod.logd.streams import StreamLink, Streams, record_from
from dynamod.logd.syslog import SyslogSocket

USAGE = """usage: dynamod-logd [--config-dir DIR] [--runtime-dir DIR]

dynamod log daemon.
  --config-dir DIR   where logd.toml is (default $DYNAMOD_CONFIG_DIR, else /etc/dynamod)
  --runtime-dir DIR  sockets and spool (default $DYNAMOD_RUNTIME_DIR, else /run/dynamod)
"""
SYNC_INTERVAL = 1.0  # records reach the disk (fsync) at most this long after logd got them


class Options:
    def __init__(self) -> None:
        self.config_dir = os.environ.get("DYNAMOD_CONFIG_DIR", "/etc/dynamod")
        self.runtime_dir = os.environ.get("DYNAMOD_RUNTIME_DIR", "/run/dynamod")


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} dynamod-logd: {message}", file=sys.stderr, flush=True)


def socket_paths(runtime_dir: str) -> tuple[str, str]:
    """The query socket and the svmgr link socket."""
    return os.path.join(runtime_dir, "logd.sock"), os.path.join(runtime_dir, "logd-streams.sock")


class Logd:
    def __init__(self, opts: Options) -> None:
        self.cfg = load(os.path.join(opts.config_dir, "logd.toml"), opts.runtime_dir)
        self.runtime_dir = opts.runtime_dir
        self.boot = boot_id()
        self.dirty = False

    def emit(self, records: list[Record]) -> None:
        if records:
            self.store.append(records)
            self.dirty = True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.streams = Streams(loop, os.path.join(self.runtime_dir, "logd", "spool"), self.boot,
                               self.emit, log)
        self.store = Store(self.cfg.directory, self.cfg.limits, log, self.streams.cursors)
        cursors = self.store.open()
        self.streams.recover(cursors)
        query_path, link_path = socket_paths(self.runtime_dir)
        self.link = StreamLink(loop, link_path, self.streams,
                               lambda body: self.emit([record_from(body, self.boot)]), log)
        self.server = ControlServer(query_path, Query(self.store).handle, log=log,
                                    server_name="dynamod-logd")
        self.syslog = SyslogSocket(loop, self.cfg.syslog_socket, self.boot, self.emit, log) \
            if self.cfg.syslog_socket else None
        await self.server.start()
        self.link.start()
        if self.syslog is not None:
            try:
                self.syslog.start()
            except OSError as exc:
                log(f"cannot serve {self.cfg.syslog_socket}: {exc.strerror}")
                self.syslog = None
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        log(f"started; storing in {self.cfg.directory}, {len(self.streams.spools)} spools recovered")
        sync = loop.create_task(self._sync_loop())
        await done.wait()
        sync.cancel()
        self.link.close()
        if self.syslog is not None:
            self.syslog.close()
        # The pipes' other copies stay with svmgr: output waits there for
        # the next logd.
        self.streams.close()
        await self.server.close()
        self.store.sync()

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            if self.dirty:
                self.dirty = False
                # In a thread: an fsync on a busy disk must not stop the reading.
                await asyncio.to_thread(self.store.sync)


def main(argv: list[str] | None = None) -> None:
    opts = Options()
    parse_command_line("dynamod-logd", USAGE, argv, opts, flags=(), valued=("--config-dir", "--runtime-dir"))
    try:
        daemon = Logd(opts)
    except LogdConfigError as exc:
        log(str(exc))
        sys.exit(2)
    asyncio.run(daemon.run())


if __name__ == "__main__":
    main()
