"""Finding entry points without ``importlib.metadata``.

Entry points are found by reading ``entry_points.txt`` of the ``*.dist-info``
and ``*.egg-info`` directories on ``sys.path`` (:func:`find_entry_points`):
``importlib.metadata`` would do the same but costs the service manager about
2 MB and 15 ms at every start (it imports email, zipfile, csv...). Anything
the scanner does not handle (a zip or egg file on ``sys.path``, a meta path
finder that provides distributions of its own) goes to ``importlib.metadata``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~6 ms; dynamodctl --help reads entry points
if TYPE_CHECKING:
    from typing import Any


class EntryPoint:
    """One entry point and the distribution that declares it: what dynamod
    uses of ``importlib.metadata.EntryPoint``."""

    __slots__ = ("distribution", "group", "name", "value", "version")

    def __init__(
        self, name: str, value: str, group: str, distribution: str = "", version: str = ""
    ) -> None:
        self.name = name
        self.value = value
        self.group = group
        self.distribution = distribution
        self.version = version

    def __repr__(self) -> str:
        return f"EntryPoint({self.name!r}, {self.value!r}, {self.group!r}, {self.distribution!r})"

    def load(self) -> Any:
        """Import ``module`` of ``module:attr.sub [extras]`` and return the
        attribute (the module itself when there is none)."""
        spec = self.value.partition("[")[0]
        module, _, attrs = spec.partition(":")
        module = module.strip()
        if not module:
            where = f" of {self.distribution}" if self.distribution else ""
            raise ValueError(f"malformed entry point {self.name!r}{where}: expected "
                             "'name = module[:attribute]' in its entry_points.txt")
        import importlib

        obj = importlib.import_module(module)
        for attr in attrs.strip().split("."):
            if attr:
                obj = getattr(obj, attr)
        return obj


def find_entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group``, in the order and with the precedence of
    ``importlib.metadata.entry_points(group=...)``: ``sys.path`` order, and of
    several distributions with the same (normalized) name the first one."""
    found = _scan_sys_path(group)
    return found if found is not None else _from_importlib_metadata(group)


def _scan_sys_path(group: str) -> list[EntryPoint] | None:
    """None when ``sys.path`` holds something only importlib.metadata reads."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is not PathFinder and hasattr(finder, "find_distributions"):
            return None
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path:
        root = entry or "."
        try:
            children = os.listdir(root)
        except NotADirectoryError:
            return None  # a zip or egg file
        except OSError:
            continue  # missing (python311.zip usually is) or unreadable: importlib.metadata skips it too
        if root.lower().endswith(".egg"):
            return None  # an unpacked egg keeps its metadata in EGG-INFO
        for child in children:
            low = child.lower()
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            # The name part of "name-version.dist-info", as importlib.metadata
            # keys it: that is what makes the first of two copies win.
            key = _normalize(low.rpartition(".")[0].partition("-")[0])
            if key in seen:
                continue
            seen.add(key)
            info = os.path.join(root, child)
            eps = _read_entry_points(os.path.join(info, "entry_points.txt"), group)
            if eps:
                name, version = _read_name_version(info)
                for ep_name, value in eps:
                    found.append(EntryPoint(ep_name, value, group, name, version))
    return found


def _normalize(name: str) -> str:
    """PEP 503 normalization with underscores (runs of -_. become one _)."""
    out = name.lower().replace("-", "_").replace(".", "_")
    while "__" in out:
        out = out.replace("__", "_")
    return out


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # none there, or the egg-info is a file, not a directory
        return None


def _read_entry_points(path: str, group: str) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of one section of an entry_points.txt, parsed
    as importlib.metadata does (stripped lines, ``#`` comments, ``[group]``
    headers, ``name = value``)."""
    text = _read_text(path)
    if not text:
        return []
    section: str | None = None
    pairs: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
        elif section == group:
            name, eq, value = line.partition("=")
            # A line without "=" stays, with an empty value: loading it
            # fails and is reported under the line's own text.
            pairs.append((name.strip(), value.strip() if eq else ""))
    return pairs


def _read_name_version(info: str) -> tuple[str, str]:
    """``Name`` and ``Version`` from the header of METADATA (PKG-INFO in an
    egg-info), which ends at the first empty line; the body can be long."""
    for fname in ("METADATA", "PKG-INFO"):
        headers: dict[str, str] = {}
        try:
            with open(os.path.join(info, fname), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        break
                    key, colon, value = line.partition(":")
                    key = key.lower()
                    if colon and key in ("name", "version") and key not in headers:
                        headers[key] = value.strip()
        except OSError:
            continue
        return headers.get("name", ""), headers.get("version", "")
    return "", ""


def _from_importlib_metadata(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=group):
        dist = ep.dist
        found.append(
            EntryPoint(
                ep.name,
                ep.value,
                group,
                (dist.metadata["Name"] or "") if dist else "",
                (dist.version or "") if dist else "",
            )
        )
    return found
