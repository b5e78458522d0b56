"""Installing the peers the way a new user would: Debian's s6 and runit with
apt-get (as root), supervisor from PyPI into the suite's own venv
(bench/.venv: not the project's .venv, which `uv sync --locked` keeps
exactly as locked)."""

from __future__ import annotations

import os
import shutil
import subprocess

from bench.common import BENCH_VENV, REPO, log

SUPERVISOR = "supervisor==4.3.0"
DEBIAN = {"s6": "s6-svscan", "runit": "runsvdir"}


def ensure_debian() -> list[str]:
    """Install the missing Debian packages; return problems (not fatal: the
    suite runs without a peer and says so)."""
    missing = [pkg for pkg, prog in DEBIAN.items() if shutil.which(prog) is None]
    if not missing:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return [
            f"{' and '.join(missing)} not installed; as root the suite installs them with apt-get"
        ]
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    p = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        env=env,
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        return [f"apt-get install {' '.join(missing)} failed: {p.stderr.strip()[-300:]}"]
    return []


def ensure_supervisor() -> list[str]:
    if (BENCH_VENV / "bin" / "supervisord").exists():
        return []
    uv = REPO / ".venv" / "bin" / "uv"
    log(f"installing {SUPERVISOR} into {BENCH_VENV.relative_to(REPO)}")
    try:
        if uv.exists():
            subprocess.run(
                [
                    str(uv),
                    "venv",
                    "-q",
                    "--python",
                    shutil.which("python3") or "python3",
                    str(BENCH_VENV),
                ],
                check=True,
            )
            subprocess.run(
                [
                    str(uv),
                    "pip",
                    "install",
                    "-q",
                    "--python",
                    str(BENCH_VENV / "bin" / "python"),
                    SUPERVISOR,
                ],
                check=True,
            )
        else:
            subprocess.run(
                [shutil.which("python3") or "python3", "-m", "venv", str(BENCH_VENV)], check=True
            )
            subprocess.run(
                [str(BENCH_VENV / "bin" / "pip"), "install", "-q", SUPERVISOR], check=True
            )
    except (OSError, subprocess.CalledProcessError) as exc:
        return [f"installing {SUPERVISOR} failed: {exc}"]
    return []


def ensure() -> list[str]:
    return ensure_debian() + ensure_supervisor()


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for pkg in DEBIAN:
        p = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True
        )
        if p.returncode == 0:
            out[pkg] = p.stdout.strip()
    py = BENCH_VENV / "bin" / "python"
    if py.exists():
        p = subprocess.run(
            [str(py), "-c", "import importlib.metadata as m; print(m.version('supervisor'))"],
            capture_output=True,
            text=True,
        )
        if p.returncode == 0:
            out["supervisor"] = p.stdout.strip()
    p = subprocess.run(
        [str(REPO / ".venv" / "bin" / "dynamodctl"), "--version"], capture_output=True, text=True
    )
    if p.returncode == 0:
        out["dynamod"] = p.stdout.strip().split()[-1]
    return out
