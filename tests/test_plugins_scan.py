"""Finding entry points without importlib.metadata (dynamod.plugins.
find_entry_points): the same answer as importlib.metadata, read from the
``*.dist-info`` / ``*.egg-info`` directories on ``sys.path``, and
importlib.metadata itself for what the scanner does not read (zip files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from dynamod.entrypoints import _from_importlib_metadata, _scan_sys_path

GROUPS = ("dynamod", "dynamodctl", "console_scripts")

# Both finders on the same sys.path, in a fresh interpreter: what each one
# reports, and what loading the scanner's entry points returns.
COMPARE = """
import json, sys
from dynamod.entrypoints import _from_importlib_metadata, _scan_sys_path, find_entry_points

def rows(eps):
    return [[e.name, e.value, e.group, e.distribution, e.version] for e in eps]

out = {"fast_path": _scan_sys_path("dynamod") is not None}
for group in ("dynamod", "console_scripts"):
    found = find_entry_points(group)
    out[group] = rows(found)
    out[group + ":loaded"] = {e.name: repr(e.load()) for e in found if e.name.startswith("fake-")}
out["metadata_imported"] = "importlib.metadata" in sys.modules
for group in ("dynamod", "console_scripts"):
    out[group + ":metadata"] = rows(_from_importlib_metadata(group))
print(json.dumps(out))
"""


def compare(*path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMOD_")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    r = subprocess.run(
        [sys.executable, "-c", COMPARE], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def ours(rows: list[list[str]]) -> list[list[str]]:
    return sorted(r for r in rows if r[0].startswith("fake-"))


@pytest.mark.parametrize("group", GROUPS)
def test_scanner_agrees_with_importlib_metadata_here(group: str) -> None:
    found = _scan_sys_path(group)
    assert found is not None, "this environment should need no fallback"
    assert [(e.name, e.value, e.distribution, e.version) for e in found] == [
        (e.name, e.value, e.distribution, e.version) for e in _from_importlib_metadata(group)
    ]


def test_first_party_plugins_are_found_with_their_distribution() -> None:
    found = {e.name: e for e in _scan_sys_path("dynamod") or []}
    assert found["dynamod-readiness"].value == "dynamod_readiness.plugin"
    assert found["dynamod-readiness"].distribution == "dynamod-readiness"
    assert found["dynamod-readiness"].version


def test_synthetic_distributions_are_read_like_importlib_metadata(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "fake_mod.py").write_text(
        "class plugin:\n    inner = 'INNER'\n\ndef main():\n    pass\n"
    )
    info = first / "fake_pkg-1.0.dist-info"
    info.mkdir()
    # Only the header counts; the body may say anything.
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: Fake.Pkg\nVersion: 1.0\nSummary: s\n\n"
        "Name: not-this\nVersion: 9\n"
    )
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        # a comment before any section

        [console_scripts]
        fake-tool = fake_mod:main

        [dynamod]
        # the plugin, with spaces and extras
          fake-plugin  =  fake_mod : plugin.inner [extra1, extra2]
        fake-module=fake_mod

        [other]
        fake-other = fake_mod
        """))
    egg = first / "fake_egg-2.0.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: fake-egg\nVersion: 2.0\n")
    (egg / "entry_points.txt").write_text("[dynamod]\nfake-egg = fake_mod:plugin\n")
    # An egg-info *file* is a distribution without entry points: it hides the
    # fake_shadowed further down the path, as importlib.metadata has it.
    (first / "fake_shadowed-1.0.egg-info").write_text("Name: fake_shadowed\nVersion: 1.0\n")
    # The same distributions again later on the path: the first copy wins.
    for name, ep in (("Fake_Pkg-9.0", "fake-duplicate"), ("fake_shadowed-2.0", "fake-shadowed")):
        d = second / f"{name}.dist-info"
        d.mkdir()
        (d / "METADATA").write_text(f"Name: {name.split('-')[0]}\nVersion: 9.0\n")
        (d / "entry_points.txt").write_text(f"[dynamod]\n{ep} = fake_mod\n")

    out = compare(first, second)
    assert out["fast_path"]
    for group in ("dynamod", "console_scripts"):
        assert out[group] == out[group + ":metadata"], group
    assert ours(out["dynamod"]) == [
        ["fake-egg", "fake_mod:plugin", "dynamod", "fake-egg", "2.0"],
        ["fake-module", "fake_mod", "dynamod", "Fake.Pkg", "1.0"],
        ["fake-plugin", "fake_mod : plugin.inner [extra1, extra2]", "dynamod", "Fake.Pkg", "1.0"],
    ]
    assert ours(out["console_scripts"]) == [
        ["fake-tool", "fake_mod:main", "console_scripts", "Fake.Pkg", "1.0"]
    ]
    loaded = out["dynamod:loaded"]
    assert loaded["fake-plugin"] == "'INNER'"
    assert loaded["fake-module"].startswith("<module 'fake_mod'")
    assert loaded["fake-egg"] == "<class 'fake_mod.plugin'>"
    assert not out["metadata_imported"]


def test_zip_on_sys_path_falls_back_to_importlib_metadata(tmp_path: Path) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("fake_zipped.py", "VALUE = 'from the zip'\n")
        z.writestr("fake_zipped-1.0.dist-info/METADATA", "Name: fake-zipped\nVersion: 1.0\n")
        z.writestr("fake_zipped-1.0.dist-info/entry_points.txt", "[dynamod]\nfake-zipped = fake_zipped:VALUE\n")
    out = compare(archive)
    assert not out["fast_path"]
    assert out["metadata_imported"]
    assert out["dynamod"] == out["dynamod:metadata"]
    assert ours(out["dynamod"]) == [
        ["fake-zipped", "fake_zipped:VALUE", "dynamod", "fake-zipped", "1.0"]
    ]
    assert out["dynamod:loaded"] == {"fake-zipped": "'from the zip'"}
