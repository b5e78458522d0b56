"""Paths, the per-run scratch directory, and the statistics every measurement
shares."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
BENCH_VENV = BENCH_DIR / ".venv"
PYCACHE = BENCH_DIR / ".pycache"
SCRATCH_PREFIX = "dynamod-bench-"
# Set in the environment of every manager the suite starts (and so of most
# of their descendants): the clean-up sweep finds stragglers by it.
TOKEN_VAR = "DYNAMOD_BENCH_RUN"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Tools:
    """Where the programs under test are."""

    python: str = str(REPO / ".venv" / "bin" / "python")
    svmgr: str = str(REPO / ".venv" / "bin" / "dynamod-svmgr")
    dynamodctl: str = str(REPO / ".venv" / "bin" / "dynamodctl")
    dynamod_init: str = str(REPO / ".venv" / "bin" / "dynamod-init")
    supervisord: str = str(BENCH_VENV / "bin" / "supervisord")
    supervisorctl: str = str(BENCH_VENV / "bin" / "supervisorctl")
    sleep: str = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
    sh: str = "/bin/sh"

    @staticmethod
    def which(name: str) -> str | None:
        return shutil.which(
            name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin"
        )


class Scratch:
    """A directory under /tmp for one run of the suite; every backend gets a
    fresh subdirectory per trial. Services are a symlink to sleep(1) in
    ``bin/``, so the processes of this run are recognisable by their argv[0]."""

    def __init__(self, keep: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.keep = keep
        self.bin = self.root / "bin"
        self.bin.mkdir()
        self.svc_sleep = str(self.bin / "svc-sleep")
        os.symlink(Tools.sleep, self.svc_sleep)
        self._n = 0

    def trial(self, label: str) -> Path:
        self._n += 1
        path = self.root / f"{self._n:03d}-{label}"
        path.mkdir()
        return path

    def env(self) -> dict[str, str]:
        """The environment managers run with: the caller's, plus bytecode
        caches for the Python managers (as an installed package has them;
        this machine sets PYTHONDONTWRITEBYTECODE), plus the run token."""
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
        env[TOKEN_VAR] = str(self.root)
        return env

    def remove(self) -> None:
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------- statistics
@dataclass
class Stat:
    """Repeated samples of one figure; ``None`` samples are failed trials."""

    unit: str
    samples: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, value: float | None, why: str = "") -> None:
        if value is None:
            self.failures.append(why or "failed")
        else:
            self.samples.append(value)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "median": self.median,
            "min": min(self.samples) if self.samples else None,
            "max": max(self.samples) if self.samples else None,
            "samples": self.samples,
            "failures": self.failures,
        }

