"""The real localectl (systemd 252) against dynamod-hostnamed."""

from __future__ import annotations

import pytest


def _install_locale(root, name: str) -> None:
    d = root / "usr/lib/locale" / name
    d.mkdir(parents=True)
    (d / "LC_CTYPE").write_bytes(b"")


def test_status(machine) -> None:
    (machine.root / "etc/locale.conf").write_text("LANG=C.UTF-8\nLC_TIME=POSIX\n")
    (machine.root / "etc/vconsole.conf").write_text("KEYMAP=de-latin1\n")
    out = machine.run("localectl", "status", check=True).stdout
    assert "System Locale: LANG=C.UTF-8" in out and "LC_TIME=POSIX" in out
    assert "VC Keymap: de-latin1" in out
    assert "X11 Layout: (unset)" in out


def test_set_locale(machine) -> None:
    _install_locale(machine.root, "de_DE.utf8")
    _install_locale(machine.root, "en_GB.utf8")
    machine.run("localectl", "set-locale", "LANG=de_DE.UTF-8", "LC_MESSAGES=en_GB.UTF-8", check=True)
    expect = "LANG=de_DE.UTF-8\nLC_MESSAGES=en_GB.UTF-8\n"
    assert (machine.root / "etc/locale.conf").read_text() == expect
    assert (machine.root / "etc/default/locale").read_text() == expect  # Debian
    out = machine.run("localectl", check=True).stdout
    assert "System Locale: LANG=de_DE.UTF-8" in out and "LC_MESSAGES=en_GB.UTF-8" in out
    # one locale without a name is LANG; the old LC_MESSAGES goes
    machine.run("localectl", "set-locale", "C.UTF-8", check=True)
    assert (machine.root / "etc/locale.conf").read_text() == "LANG=C.UTF-8\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["LANG=de_DE.UTF-8"], "Locale de_DE.UTF-8 not installed, refusing."),
        (["LANG=C.UTF-8", "LANG=POSIX"], "Locale variable 'LANG' is set more than once"),
        (["LC_ALL=C.UTF-8"], "LC_ALL"),
    ],
)
def test_set_locale_refused(machine, args: list[str], message: str) -> None:
    out = machine.run("localectl", "set-locale", *args)
    assert out.returncode == 1
    assert message in out.stderr, out.stderr
    assert not (machine.root / "etc/locale.conf").exists()


def test_list_locales(machine) -> None:
    # computed by the client from the machine's own locales
    assert "C.UTF-8" in machine.run("localectl", "list-locales", check=True).stdout


def test_set_keymap_converts_to_x11(machine) -> None:
    machine.run("localectl", "set-keymap", "de", check=True)
    assert (machine.root / "etc/vconsole.conf").read_text() == "KEYMAP=de\n"
    conf = (machine.root / "etc/X11/xorg.conf.d/00-keyboard.conf").read_text()
    assert 'Option "XkbLayout" "de"' in conf and 'Option "XkbModel" "pc105"' in conf
    assert "XKBLAYOUT=de\n" in (machine.root / "etc/default/keyboard").read_text()
    out = machine.run("localectl", check=True).stdout
    assert "VC Keymap: de" in out and "X11 Layout: de" in out and "X11 Model: pc105" in out


def test_set_keymap_with_toggle_no_convert(machine) -> None:
    machine.run("localectl", "--no-convert", "set-keymap", "de", "us", check=True)
    assert (machine.root / "etc/vconsole.conf").read_text() == "KEYMAP=de\nKEYMAP_TOGGLE=us\n"
    assert not (machine.root / "etc/X11/xorg.conf.d/00-keyboard.conf").exists()
    assert "VC Toggle Keymap: us" in machine.run("localectl", check=True).stdout


def test_set_x11_keymap_converts_to_console(machine) -> None:
    machine.run("localectl", "set-x11-keymap", "gb", "pc105", "", "terminate:ctrl_alt_bksp", check=True)
    conf = (machine.root / "etc/X11/xorg.conf.d/00-keyboard.conf").read_text()
    assert 'Option "XkbLayout" "gb"' in conf
    assert 'Option "XkbOptions" "terminate:ctrl_alt_bksp"' in conf
    assert (machine.root / "etc/vconsole.conf").read_text() == "KEYMAP=uk\n"
    out = machine.run("localectl", check=True).stdout
    assert "X11 Layout: gb" in out and "X11 Options: terminate:ctrl_alt_bksp" in out
    assert "VC Keymap: uk" in out
    machine.run("localectl", "--no-convert", "set-x11-keymap", "de", check=True)
    assert (machine.root / "etc/vconsole.conf").read_text() == "KEYMAP=uk\n"


def test_keymap_not_installed(machine) -> None:
    maps = machine.root / "usr/share/keymaps/i386/qwerty"
    maps.mkdir(parents=True)
    (maps / "us.map.gz").write_bytes(b"")
    out = machine.run("localectl", "set-keymap", "fr")
    assert out.returncode == 1
    assert "Keymap fr is not installed." in out.stderr
    assert not (machine.root / "etc/vconsole.conf").exists()
    machine.run("localectl", "--no-convert", "set-keymap", "us", check=True)


@pytest.mark.parametrize(
    "argv",
    [["set-locale", "LANG=C.UTF-8"], ["set-keymap", "de"], ["set-x11-keymap", "de"]],
)
def test_unprivileged_callers_are_refused(machine, argv: list[str]) -> None:
    out = machine.run("localectl", *argv, nobody=True)
    assert out.returncode == 1
    assert "Access denied" in out.stderr, out.stderr
    for rel in ("etc/locale.conf", "etc/vconsole.conf", "etc/X11/xorg.conf.d/00-keyboard.conf"):
        assert not (machine.root / rel).exists()
