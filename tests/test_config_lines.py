"""The line of a dotted key in a TOML file (``check --json``'s ``line``)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamod.config.lines import KeyLines
from dynamod.config.loader import load_config

COMPAT_DIR = Path(
    os.environ.get("DYNAMOD_COMPAT_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared/compat/dynamod-configs"
)

DOC = '''\
# a comment with key = value in it
[service]
name = "web"
exec = [
  "/bin/sh",   # the program
  "-c",
  """
not.a.key = 1
[not-a-table]
""",
]
environment = { LANG = "C", "odd key" = "x" }
service-extra.dotted.key = 1

[service.user]
user = 'www'

[namespace]
bind-mounts = [
  { source = "/a", target = "/b" },
  { source = "/c", target = "/d" },
  { source = "/e" },
]

[[hooks]]
run = "a"

[[hooks]]
run = "b"
'''


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("service", 2),
        ("service.name", 3),
        ("service.exec", 4),
        ("service.exec[0]", 5),
        ("service.exec[1]", 6),
        ("service.exec[2]", 7),
        ("service.environment", 12),
        ("service.environment.LANG", 12),
        ("service.environment.odd key", 12),
        ("service.service-extra.dotted.key", 13),
        ("service.service-extra", 13),
        ("service.user", 15),
        ("service.user.user", 16),
        ("namespace.bind-mounts[0].target", 20),
        ("namespace.bind-mounts[1].source", 21),
        ("namespace.bind-mounts[2].source", 22),
        ("hooks[0].run", 26),
        ("hooks[1].run", 29),
        # Not written: the closest enclosing key or table.
        ("service.type", 2),
        ("service.user.group", 15),
        ("namespace.bind-mounts[2].writable", 22),
        ("service.exec[7]", 4),
        # Not in the file at all.
        ("restart.delay", None),
        ("not.a.key", None),
        ("not-a-table", None),
        ("", None),
    ],
)
def test_line_of(key: str, line: int | None) -> None:
    assert tomllib.loads(DOC)  # the document is valid TOML
    assert KeyLines(DOC).line_of(key) == line


def test_loader_fills_in_lines(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "a.toml").write_text(
        '[service]\nname = "a"\nexec = ["/bin/true"]\n\n[restart]\ndelay = "soon"\n'
        "max_restarts = 3\n[dependencies]\nrequires = [\n  \"x\",\n  \"ghost\",\n]\n"
    )
    (tmp_path / "services" / "b.toml").write_text('[service]\nname = "b"\nexec = [\n')
    cfg = load_config(tmp_path)
    got = {(d.file, d.key): d.line for d in cfg.diagnostics}
    assert got == {
        ("services/a.toml", "restart.delay"): 6,
        ("services/a.toml", "restart.max_restarts"): 7,
        ("services/a.toml", "dependencies.requires[0]"): 10,
        ("services/a.toml", "dependencies.requires[1]"): 11,
        ("services/b.toml", ""): 4,  # from the parser's message
    }


def _leaves(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [k for key, v in value.items() for k in _leaves(v, f"{path}.{key}" if path else key)]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [k for i, v in enumerate(value) for k in _leaves(v, f"{path}[{i}]")]
    return [path]


@pytest.mark.skipif(not COMPAT_DIR.is_dir(), reason=f"{COMPAT_DIR} not found")
def test_every_key_of_the_reference_configs_is_found() -> None:
    files = sorted(COMPAT_DIR.glob("*/*.toml"))
    assert files
    for path in files:
        text = path.read_text()
        lines = text.splitlines()
        index = KeyLines(text)
        for key in _leaves(tomllib.loads(text)):
            line = index.line_of(key)
            assert line is not None and key.rpartition(".")[2].split("[")[0] in lines[line - 1], (
                path.name, key, line)


_keys = st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True)
_scalars = st.one_of(st.integers(-1000, 1000), st.booleans(), st.text(max_size=8),
                     st.floats(allow_nan=False, allow_infinity=False))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_keys, inner, max_size=3), max_leaves=8)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(c if c.isascii() and (c.isalnum() or c in " -_.") else f"\\U{ord(c):08x}"
                             for c in value) + '"'
    if isinstance(value, list):
        return "[\n" + "".join(f"  {_toml(v)},\n" for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_keys, st.dictionaries(_keys, _values, max_size=4), max_size=4))
def test_generated_documents(doc: dict[str, dict[str, Any]]) -> None:
    """Tables of arbitrary values (multi-line arrays, inline tables): each
    table and key is found on the line where it is written, and the scanner
    never raises."""
    text = "".join(f"[{t}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in body.items())
                   for t, body in doc.items())
    assert tomllib.loads(text) == doc
    lines = text.splitlines()
    index = KeyLines(text)
    for table, body in doc.items():
        assert lines[index.line_of(table) - 1] == f"[{table}]"
        for key in body:
            assert lines[index.line_of(f"{table}.{key}") - 1].startswith(f"{key} = ")


@given(st.text(max_size=300))
def test_never_raises_on_any_text(text: str) -> None:
    index = KeyLines(text)
    index.line_of("a.b[0].c")
