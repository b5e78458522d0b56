"""``dynamod-hostnamed``: the daemon, its activation helper and the bus-file installer.

    dynamod-hostnamed [--root DIR] [--config FILE]       run in the foreground
    dynamod-hostnamed activate                           D-Bus activation: start the service in svmgr
    dynamod-hostnamed install-bus-files [--root DIR]     write the activation and policy files
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from dynamod_hostnamed.config import DEFAULT_PATH, ConfigError, load_config
from dynamod_hostnamed.fsroot import Root

log = logging.getLogger("dynamod-hostnamed")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynamod-hostnamed", description=__doc__.splitlines()[0])
    p.add_argument("command", nargs="?", default="run", choices=("run", "activate", "install-bus-files"))
    p.add_argument("--root", default="/", help="where the files read and written live (default /)")
    p.add_argument("--config", help=f"configuration file (default ROOT{DEFAULT_PATH})")
    return p


def activate(passthrough: list[str]) -> int:
    """Exec= of the activation files: ask svmgr to start the service (the
    start job ends when it is ready, i.e. owns the names); with no svmgr
    running, become the daemon (with ``passthrough``: --root, --config)."""
    from dynamod.ipc.client import Client, ConnectError, RemoteError

    try:
        with Client(timeout=60) as c:
            c.request("StartService", {"name": "dynamod-hostnamed"})
        return 0
    except ConnectError as exc:
        log.info("%s: running the daemon directly", exc)
    except RemoteError as exc:
        print(f"dynamod-hostnamed: svmgr could not start dynamod-hostnamed: {exc.message}",
              file=sys.stderr)  # fmt: skip
        return 1
    os.execv(sys.executable, [sys.executable, "-m", "dynamod_hostnamed", "run", *passthrough])
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="dynamod-hostnamed: %(message)s", stream=sys.stderr)
    if args.command == "activate":
        passthrough = ["--root", args.root] + (["--config", args.config] if args.config else [])
        return activate(passthrough)
    root = Root(args.root)
    if args.command == "install-bus-files":
        from dynamod_hostnamed import busfiles

        for rel in busfiles.install(root):
            print(root.path(rel))
        return 0
    try:
        config = load_config(args.config or str(root.path(DEFAULT_PATH)))
    except ConfigError as exc:
        print(f"dynamod-hostnamed: {exc}", file=sys.stderr)
        return 2
    from dynamod_mimic_common import BusUnavailable

    from dynamod_hostnamed.daemon import serve

    try:
        return asyncio.run(serve(root, config))
    except BusUnavailable as exc:
        print(f"dynamod-hostnamed: {exc}", file=sys.stderr)
        return 1
