"""logd's configuration file, ``CONFIG_DIR/logd.toml`` (docs/logd.md).

Every key is optional; an unknown key, a wrong type or a bad size is an
error naming the file and the key, and logd refuses to start with it (the
defaults are never applied silently over a typo).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field

from dynamod.config.units import parse_size
from dynamod.logd.store import Limits

MAX_CONFIG = 64 * 1024


class LogdConfigError(Exception):
    pass


@dataclass
class LogdConfig:
    directory: str
    limits: Limits = field(default_factory=Limits)
    syslog_socket: str = ""


_SIZES = {"max-file-size": "max_file_size", "max-total-size": "max_total_size", "keep-free": "keep_free"}


def default_directory(runtime_dir: str) -> str:
    """/var/log/dynamod for root; an unprivileged logd keeps its files in
    its runtime directory."""
    return "/var/log/dynamod" if os.geteuid() == 0 else os.path.join(runtime_dir, "log")


def load(path: str, runtime_dir: str) -> LogdConfig:
    cfg = LogdConfig(default_directory(runtime_dir),
                     syslog_socket="/dev/log" if os.geteuid() == 0 else "")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG + 1)
    except FileNotFoundError:
        return cfg
    except OSError as exc:
        raise LogdConfigError(f"{path}: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG:
        raise LogdConfigError(f"{path}: larger than {MAX_CONFIG} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError, ValueError) as exc:
        raise LogdConfigError(f"{path}: {exc}") from None
    for section, keys in data.items():
        if section not in ("storage", "ring", "syslog") or not isinstance(keys, dict):
            raise LogdConfigError(f"{path}: unknown section or key {section!r}")
        for key, value in keys.items():
            where = f"{path}: {section}.{key}"
            try:
                _apply(cfg, section, key, value)
            except (ValueError, TypeError) as exc:
                raise LogdConfigError(f"{where}: {exc}") from None
    return cfg


def _apply(cfg: LogdConfig, section: str, key: str, value: object) -> None:
    lim = cfg.limits
    if section == "storage" and key == "directory":
        cfg.directory = _str(value)
    elif section == "storage" and key in _SIZES:
        setattr(lim, _SIZES[key], parse_size(value))
    elif section == "storage" and key == "max-files":
        lim.max_files = _count(value)
    elif section == "ring" and key == "records":
        lim.ring_records = _count(value)
    elif section == "ring" and key == "size":
        lim.ring_bytes = parse_size(value)
    elif section == "syslog" and key == "socket":
        cfg.syslog_socket = _str(value, empty=True)
    else:
        raise ValueError("unknown key")


def _str(value: object, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty) or "\0" in value:
        raise ValueError(f"expected a path, got {value!r}")
    return value


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1_000_000:
        raise ValueError(f"expected a whole number from 1 to 1000000, got {value!r}")
    return value
