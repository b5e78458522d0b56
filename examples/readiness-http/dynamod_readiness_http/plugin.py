"""The plugin module named by the entry point: hook implementations only.

dynamod imports this module when it loads plugins (the service manager at
start, ``dynamodctl check``), so it stays cheap: the detector module is
imported here, but it only imports the standard library.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import dynamod
from dynamod.api import ReadinessType
from dynamod_readiness_http.detector import HttpDetector

OPTIONS = frozenset({"url", "status"})


def validate(table: dict[str, Any]) -> list[tuple[str, str]]:
    """Check the ``[readiness]`` keys of a service when its file is loaded.

    ``table`` holds only this type's keys (not ``type``/``timeout``), as
    written in TOML. Return ``(key, message)`` pairs; empty means valid.
    """
    problems: list[tuple[str, str]] = []
    url = table.get("url")
    if url is None:
        problems.append(("url", "required for readiness type 'http'"))
    elif not isinstance(url, str):
        problems.append(("url", "expected a string such as 'http://127.0.0.1:8080/health'"))
    else:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            problems.append(("url", f"invalid URL {url!r}: {exc}"))
        else:
            if parts.scheme != "http":
                problems.append(("url", f"only http:// URLs are supported, got {url!r}"))
            elif not parts.hostname:
                problems.append(("url", f"the URL has no host: {url!r}"))
    status = table.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        problems.append(("status", f"expected an HTTP status code (100-599), got {status!r}"))
    return problems


@dynamod.hookimpl
def dynamod_readiness_types() -> list[ReadinessType]:
    return [
        ReadinessType(
            name="http",
            create=HttpDetector,
            options=OPTIONS,
            validate=validate,
            description="a GET of url answers with the expected status (default 200)",
        )
    ]
