"""The daemon's configuration: ``/etc/dynamod/hostnamed.toml`` (``--config``).

```toml
[ntp]
# dynamod services that synchronise the clock, in order of preference:
# SetNTP(true) starts the first one svmgr knows, SetNTP(false) stops every one.
services = ["chrony", "ntpsec", "openntpd", "systemd-timesyncd"]
```

A missing file means the defaults. An unknown key, a value of the wrong type
or an invalid service name is an error naming the file and the key; the
daemon refuses to start rather than run with half a configuration.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field

DEFAULT_PATH = "/etc/dynamod/hostnamed.toml"
DEFAULT_NTP_SERVICES = ("chrony", "ntpsec", "openntpd", "systemd-timesyncd")
# dynamod's service names (dynamod/config): letters, digits and . _ - @
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,254}")


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key."""


@dataclass(frozen=True)
class Config:
    ntp_services: tuple[str, ...] = field(default=DEFAULT_NTP_SERVICES)


def parse_config(text: str, path: str = DEFAULT_PATH) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for key in data:
        if key != "ntp":
            raise ConfigError(f"{path}: unknown table or key '{key}' (known: [ntp])")
    ntp = data.get("ntp", {})
    if not isinstance(ntp, dict):
        raise ConfigError(f"{path}: ntp: expected a table, got {type(ntp).__name__}")
    for key in ntp:
        if key != "services":
            raise ConfigError(f"{path}: ntp.{key}: unknown key (known: services)")
    services = ntp.get("services", list(DEFAULT_NTP_SERVICES))
    if not isinstance(services, list):
        raise ConfigError(f"{path}: ntp.services: expected an array of strings")
    for i, name in enumerate(services):
        if not isinstance(name, str):
            raise ConfigError(
                f"{path}: ntp.services[{i}]: expected a string, got {type(name).__name__}"
            )
        if not _SERVICE_NAME.fullmatch(name):
            raise ConfigError(f"{path}: ntp.services[{i}]: invalid service name {name!r}")
    return Config(ntp_services=tuple(services))


def load_config(path: str) -> Config:
    """Read ``path``; a missing file gives the defaults."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from exc
    return parse_config(text, path)
