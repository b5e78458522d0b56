"""Readiness type ``tcp-port`` against a real dynamod-svmgr and real TCP
listeners (the services themselves)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

import pytest

from dynamod.testing import ConfigTree, Svmgr

TEMPORARY = '[restart]\npolicy = "temporary"\n'


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def listener(
    tree: ConfigTree, name: str, bind: str, port: int, readiness: str, delay: float = 0.5
) -> None:
    """A service that listens on ``bind``:``port`` after ``delay`` seconds."""
    code = f"import socket, time; s = socket.create_server(({bind!r}, {port}), family=socket.{'AF_INET6' if ':' in bind else 'AF_INET'}); time.sleep(1000)"
    tree.simple(
        name,
        f'sleep {delay}; exec {sys.executable} -c "{code}"',
        extra=f'[readiness]\ntype = "tcp-port"\n{readiness}\n' + TEMPORARY,
    )


def test_ready_once_the_port_accepts(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], free_port: Callable[..., int]
) -> None:
    port = free_port()
    listener(tree, "db", "127.0.0.1", port, f"port = {port}")
    mgr = svmgr()
    info = mgr.wait_state("db", ["running", "failed"])
    assert info["state"] == "running", info["reason"]
    lines = [x for _t, x in mgr.request("GetLogs", {"name": "db"})["lines"]]
    # Polled while the port was closed, and said so once, not per attempt.
    refused = [x for x in lines if "connection refused" in x]
    assert refused == [
        f"[dynamod] tcp-port: 127.0.0.1 port {port}: connection refused; still waiting"
    ]


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6_literal(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], free_port: Callable[..., int], host: str
) -> None:
    port = free_port("::1")
    listener(tree, "v6", "::1", port, f'port = {port}\nhost = "{host}"', delay=0.2)
    mgr = svmgr()
    info = mgr.wait_state("v6", ["running", "failed"])
    assert info["state"] == "running", info["reason"]


def test_host_name(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], free_port: Callable[..., int]
) -> None:
    port = free_port()
    listener(tree, "named", "127.0.0.1", port, f'port = {port}\nhost = "localhost"', delay=0.2)
    mgr = svmgr()
    info = mgr.wait_state("named", ["running", "failed"])
    assert info["state"] == "running", info["reason"]


def test_timeout_when_nothing_listens(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], free_port: Callable[..., int]
) -> None:
    port = free_port()
    tree.simple(
        "deaf",
        "exec sleep 1000",
        extra=f'[readiness]\ntype = "tcp-port"\nport = {port}\ntimeout = "1s"\n' + TEMPORARY,
    )
    mgr = svmgr()
    info = mgr.wait_state("deaf", "failed")
    assert info["reason"] == "readiness timeout after 1s"


def test_exit_before_listening(
    tree: ConfigTree, svmgr: Callable[..., Svmgr], free_port: Callable[..., int]
) -> None:
    port = free_port()
    tree.simple(
        "crash",
        "sleep 0.2; exit 1",
        extra=f'[readiness]\ntype = "tcp-port"\nport = {port}\n' + TEMPORARY,
    )
    mgr = svmgr()
    info = mgr.wait_state("crash", "failed")
    assert info["reason"] == "exited 1"
