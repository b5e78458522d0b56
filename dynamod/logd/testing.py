"""A dynamod-logd service in a test config tree, and its query socket."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dynamod.ipc.client import Client, ProtocolError
from dynamod.testing import ConfigTree, wait_until


def add_logd(tree: ConfigTree, runtime: Path, storage: Path, *, wrapper: list[str] | None = None,
             config: str = "", enabled: bool = True) -> None:
    """The logd service (restarted at once when it dies) and its logd.toml."""
    (tree.root / "logd.toml").write_text(
        f'[storage]\ndirectory = "{storage}"\n{config}\n[syslog]\nsocket = ""\n'
        if "[syslog]" not in config else f'[storage]\ndirectory = "{storage}"\n{config}\n')
    argv = [*(wrapper or []), sys.executable, "-m", "dynamod.logd.main", "--config-dir", str(tree.root),
            "--runtime-dir", str(runtime)]
    quoted = ", ".join(f'"{a}"' for a in argv)
    # Tests kill logd many times: the root supervisor must not give up.
    tree.supervisor("root", """
        [supervisor]
        name = "root"
        [restart]
        max-restarts = 10000
        """)
    tree.service("dynamod-logd", f"""
        [service]
        name = "dynamod-logd"
        exec = [{quoted}]
        enabled = {"true" if enabled else "false"}
        [restart]
        delay = "0s"
        max-restarts = 1000
        """)


def query(runtime: Path, **body: Any) -> dict:
    with Client(str(runtime / "logd.sock"), timeout=30) as c:
        return c.request("QueryLogs", body).body


def all_records(runtime: Path, names: list[str] | None = None) -> list[dict]:
    """Every record, oldest first, paging with ``after``."""
    out: list[dict] = []
    after = 0
    while True:
        body = query(runtime, after=after, **({"names": names} if names else {}))
        out += body["records"]
        if body["last"] == after:
            return out
        after = body["last"]


def messages(runtime: Path, name: str) -> list[bytes]:
    return [r["message"] for r in all_records(runtime, [name]) if r["service"] == name]


def answers(runtime: Path) -> bool:
    """Whether logd answers a query now."""
    try:
        query(runtime, lines=0)
        return True
    except (OSError, ProtocolError):
        return False


def wait_logd(runtime: Path, timeout: float = 15.0) -> None:
    wait_until(lambda: answers(runtime), "dynamod-logd answering", timeout)
