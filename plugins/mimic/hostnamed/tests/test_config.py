"""The daemon's configuration file."""

from __future__ import annotations

import pytest
from dynamod_hostnamed.config import DEFAULT_NTP_SERVICES, ConfigError, load_config, parse_config


def test_defaults(tmp_path) -> None:
    assert load_config(str(tmp_path / "missing.toml")).ntp_services == DEFAULT_NTP_SERVICES
    assert parse_config("").ntp_services == DEFAULT_NTP_SERVICES


def test_services() -> None:
    assert parse_config('[ntp]\nservices = ["chrony"]\n').ntp_services == ("chrony",)
    assert parse_config("[ntp]\nservices = []\n").ntp_services == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[ntp]\nservice = ['x']\n", "ntp.service: unknown key"),
        ("[time]\n", "unknown table or key 'time'"),
        ("[ntp]\nservices = 'chrony'\n", "expected an array"),
        ("[ntp]\nservices = [1]\n", "ntp.services[0]: expected a string, got int"),
        ("[ntp]\nservices = ['a b']\n", "invalid service name"),
        ("ntp = 3\n", "expected a table"),
        ("[ntp\n", "not valid TOML"),
    ],
)
def test_errors_name_file_and_key(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "/etc/dynamod/hostnamed.toml")
    assert str(exc.value).startswith("/etc/dynamod/hostnamed.toml: ")
    assert fragment in str(exc.value)


def test_not_utf8(tmp_path) -> None:
    p = tmp_path / "h.toml"
    p.write_bytes(b"[ntp]\nservices = ['\xff']\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(p))
