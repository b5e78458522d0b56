"""The backends: dynamod, its peers, and the floor."""

from __future__ import annotations

from bench.backends.base import Backend, Unavailable
from bench.backends.dynamod_svmgr import Dynamod
from bench.backends.floor import Floor
from bench.backends.runit import Runit
from bench.backends.s6 import S6
from bench.backends.supervisord import Supervisord

# Column order of every table: dynamod, the floor, then the peers.
ALL: list[type[Backend]] = [Dynamod, Floor, Supervisord, S6, Runit]

__all__ = [
    "ALL",
    "S6",
    "Backend",
    "Dynamod",
    "Floor",
    "Runit",
    "Supervisord",
    "Unavailable",
]
