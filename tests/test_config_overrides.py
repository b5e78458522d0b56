"""The override directory as the loader reads it: drop-ins merged over a
service's definition, problems named in the drop-in, state files."""

from __future__ import annotations

from pathlib import Path

from dynamod.config import overrides as ov
from dynamod.config.loader import load_config
from dynamod.testing import ConfigTree


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_dropin_merges_tables_and_replaces_values(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path)
    tree.simple("web", "true", environment={"A": "1", "B": "2"},
                extra='[dependencies]\nwants = ["x", "y"]\n')
    tree.simple("x")
    tree.simple("y")
    write(tmp_path, "overrides/web.toml",
          '[service]\nenvironment = { B = "3", C = "4" }\ndescription = "patched"\n'
          '[dependencies]\nwants = ["y"]\n')
    cfg = load_config(tmp_path)
    assert cfg.errors == []
    web = cfg.services["web"]
    assert web.environment == {"A": "1", "B": "3", "C": "4"}  # a table: merged
    assert web.dependencies.wants == ("y",)  # a list: replaced
    assert web.description == "patched"
    assert web.source == "services/web.toml" and web.dropin == "overrides/web.toml"
    assert (tmp_path / "services" / "web.toml").read_text().count("patched") == 0


def test_problems_in_a_dropin_name_the_dropin_and_its_line(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path)
    tree.simple("web", "true")
    write(tmp_path, "overrides/web.toml", '# a comment\n[restart]\ndelay = "soon"\n[bogus]\nx = 1\n')
    cfg = load_config(tmp_path)
    found = {(d.file, d.key, d.line) for d in cfg.errors}
    assert ("overrides/web.toml", "restart.delay", 3) in found
    assert ("overrides/web.toml", "bogus", 4) in found
    assert "web" in cfg.refused and "web" not in cfg.services


def test_broken_dropin_refuses_its_service_and_stray_one_warns(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path)
    tree.simple("web", "true")
    write(tmp_path, "overrides/web.toml", "[service\n")
    write(tmp_path, "overrides/ghost.toml", "[service]\n")
    cfg = load_config(tmp_path)
    assert "web" in cfg.refused
    assert any("its override overrides/web.toml is invalid: invalid TOML" in e for e in cfg.refused["web"].errors)
    assert [str(d) for d in cfg.warnings] == [
        "warning: overrides/ghost.toml: override for 'ghost', which is not a service (the file is ignored)"
    ]
    # What dynamodctl edit checks: a candidate text in place of the file.
    cfg = load_config(tmp_path, dropins={"web": '[service]\ndescription = "ok"\n', "ghost": None})
    assert cfg.services["web"].description == "ok" and cfg.warnings == []


def test_state_files_win_over_the_file_and_broken_ones_are_ignored(tmp_path: Path) -> None:
    tree = ConfigTree(tmp_path)
    tree.simple("on", "true")
    tree.simple("off", "true", enabled=False)
    tree.simple("bad", "true", enabled=False)
    ov.write_state(str(tmp_path), "on", ov.UnitState(enabled=False, masked=True))
    ov.write_state(str(tmp_path), "off", ov.UnitState(enabled=True))
    write(tmp_path, "overrides/state/bad.toml", "enabled = 1\nmystery = true\n")
    cfg = load_config(tmp_path)
    assert (cfg.services["on"].enabled, cfg.services["on"].masked) == (False, True)
    assert (cfg.services["off"].enabled, cfg.services["off"].masked) == (True, False)
    assert cfg.services["bad"].enabled is False
    assert cfg.errors == []
    assert sorted(d.message for d in cfg.warnings) == [
        "enabled: must be true or false (ignored)",
        "mystery: unknown key (known: enabled, masked) (ignored)",
    ]
    assert ov.render_state(ov.UnitState(enabled=False, masked=True)).endswith("enabled = false\nmasked = true\n")
    # An empty state removes the file: nothing is left to say.
    ov.write_state(str(tmp_path), "off", ov.UnitState())
    assert not Path(ov.state_path(str(tmp_path), "off")).exists()
