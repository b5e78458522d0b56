"""locale1's data: the system locale (/etc/locale.conf, /etc/default/locale
on Debian), the console keymap (/etc/vconsole.conf) and the X11 keyboard
(/etc/X11/xorg.conf.d/00-keyboard.conf, /etc/default/keyboard on Debian).

Validation: a locale assignment is ``NAME=value`` with NAME one of
:data:`LOCALE_KEYS`, each at most once, and the value a locale installed in
the tree (``C``, ``POSIX`` and ``C.UTF-8`` always are; otherwise a directory
of /usr/lib/locale or an entry of its locale-archive, with the codeset
normalised as glibc does: ``de_DE.UTF-8`` is ``de_DE.utf8``). LANGUAGE is a
colon-separated list of names and is checked for its syntax only. Keymaps
and X11 settings are names without control characters, quotes, backslashes
or whitespace; a keymap must exist when the tree has console keymaps.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from dynamod_hostnamed import envfile
from dynamod_hostnamed.errors import invalid
from dynamod_hostnamed.fsroot import Root

LOCALE_KEYS = (
    "LANG", "LANGUAGE", "LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE",
    "LC_MONETARY", "LC_MESSAGES", "LC_PAPER", "LC_NAME", "LC_ADDRESS",
    "LC_TELEPHONE", "LC_MEASUREMENT", "LC_IDENTIFICATION",
)  # fmt: skip
LOCALE_CONF = "/etc/locale.conf"
DEFAULT_LOCALE = "/etc/default/locale"
VCONSOLE_CONF = "/etc/vconsole.conf"
XORG_KEYBOARD = "/etc/X11/xorg.conf.d/00-keyboard.conf"
DEFAULT_KEYBOARD = "/etc/default/keyboard"
KBD_MODEL_MAP = "/usr/share/systemd/kbd-model-map"
KEYMAP_DIRS = ("/usr/share/keymaps", "/usr/share/kbd/keymaps", "/usr/lib/kbd/keymaps")
_ALWAYS = {"C", "POSIX", "C.utf8"}
_LOCALE_NAME = re.compile(r"[A-Za-z0-9_.@+-]+")
_KB_NAME = re.compile(r"[^\s\"'\\\x00-\x1f\x7f]+")
# A console keymap is a file name: no glob or path characters.
_KEYMAP_NAME = re.compile(r"[A-Za-z0-9_+@][A-Za-z0-9_.,+@-]*")
_XKB_OPTION = re.compile(r'Option\s+"(Xkb(?:Layout|Model|Variant|Options))"\s+"([^"]*)"')


def normalize_locale(name: str) -> str:
    """glibc's spelling of a locale's codeset: lower case, only letters and digits."""
    base, dot, rest = name.partition(".")
    if not dot:
        return name
    codeset, at, modifier = rest.partition("@")
    codeset = re.sub(r"[^a-z0-9]", "", codeset.lower())
    return f"{base}.{codeset}{at}{modifier}"


@dataclass
class X11:
    layout: str = ""
    model: str = ""
    variant: str = ""
    options: str = ""


class LocaleFiles:
    def __init__(self, root: Root) -> None:
        self.root = root

    # --- locale --------------------------------------------------------------

    def locale(self) -> list[str]:
        text = self.root.read(LOCALE_CONF)
        if text is None:
            text = self.root.read(DEFAULT_LOCALE)
        data = envfile.parse(text)
        return [f"{k}={data[k]}" for k in LOCALE_KEYS if data.get(k)]

    def installed_locales(self) -> set[str]:
        names = set(_ALWAYS)
        base = self.root.path("/usr/lib/locale")
        try:
            for entry in base.iterdir():
                if entry.is_dir() and (entry / "LC_CTYPE").exists():
                    names.add(normalize_locale(entry.name))
        except OSError:
            pass
        archive = base / "locale-archive"
        if archive.is_file():
            try:
                out = subprocess.run(
                    ["localedef", "--list-archive", str(archive)],
                    capture_output=True, text=True, timeout=10, check=False,
                ).stdout  # fmt: skip
            except (OSError, subprocess.TimeoutExpired):
                out = ""
            names.update(normalize_locale(n) for n in out.split())
        return names

    def check_locale(self, assignments: list[str]) -> dict[str, str]:
        """The validated ``{NAME: value}`` of SetLocale's argument."""
        result: dict[str, str] = {}
        installed: set[str] | None = None
        if len(assignments) == 1 and "=" not in assignments[0]:
            # localectl set-locale de_DE.UTF-8 sends the bare name: it is LANG.
            assignments = [f"LANG={assignments[0]}"]
        for item in assignments:
            key, sep, value = item.partition("=")
            if not sep:
                raise invalid(f"Locale assignment '{item}' is not of the form NAME=VALUE")
            if key not in LOCALE_KEYS:
                raise invalid(f"Locale variable '{key}' is not valid: one of {', '.join(LOCALE_KEYS)}")
            if key in result:
                raise invalid(f"Locale variable '{key}' is set more than once")
            if not value:
                continue
            if key == "LANGUAGE":
                if not all(_LOCALE_NAME.fullmatch(p) for p in value.split(":") if p):
                    raise invalid(f"Invalid LANGUAGE list '{value}'")
            else:
                if not _LOCALE_NAME.fullmatch(value):
                    raise invalid(f"Invalid locale name '{value}' for {key}")
                if installed is None:
                    installed = self.installed_locales()
                if normalize_locale(value) not in installed:
                    raise invalid(f"Locale {value} not installed, refusing.")
            result[key] = value
        return result

    def set_locale(self, values: dict[str, str]) -> None:
        """Replace the whole system locale: keys not in ``values`` are dropped."""
        changes: dict[str, str | None] = {k: values.get(k) for k in LOCALE_KEYS}
        targets = [LOCALE_CONF]
        if self.root.exists(DEFAULT_LOCALE) or self.root.is_debian():
            targets.append(DEFAULT_LOCALE)
        for rel in targets:
            text = envfile.update(self.root.read(rel), changes)
            if text:
                self.root.write(rel, text)
            else:
                self.root.remove(rel)

    # --- console keymap ------------------------------------------------------

    def vconsole(self) -> tuple[str, str]:
        data = envfile.parse(self.root.read(VCONSOLE_CONF))
        return data.get("KEYMAP", ""), data.get("KEYMAP_TOGGLE", "")

    def keymap_exists(self, name: str) -> bool | None:
        """Whether a console keymap ``name`` is installed, or None when the
        tree has no keymaps at all (then nothing can be checked)."""
        seen_dir = False
        for rel in KEYMAP_DIRS:
            top = self.root.path(rel)
            if not top.is_dir():
                continue
            seen_dir = True
            for suffix in (".map", ".map.gz", ".map.bz2", ".map.xz", ".map.zst"):
                if any(top.rglob(name + suffix)):
                    return True
        return False if seen_dir else None

    def check_keymap(self, name: str, what: str) -> None:
        if not name:
            return
        if not _KEYMAP_NAME.fullmatch(name) or len(name) > 255:
            raise invalid(f"Invalid {what} '{name}'")
        if self.keymap_exists(name) is False:
            raise invalid(f"Keymap {name} is not installed.")

    def set_vconsole(self, keymap: str, toggle: str) -> None:
        text = envfile.update(
            self.root.read(VCONSOLE_CONF), {"KEYMAP": keymap, "KEYMAP_TOGGLE": toggle}
        )
        if text:
            self.root.write(VCONSOLE_CONF, text)
        else:
            self.root.remove(VCONSOLE_CONF)

    # --- X11 -------------------------------------------------------------------

    def x11(self) -> X11:
        text = self.root.read(XORG_KEYBOARD)
        if text is not None:
            found = dict(_XKB_OPTION.findall(text))
            return X11(
                found.get("XkbLayout", ""),
                found.get("XkbModel", ""),
                found.get("XkbVariant", ""),
                found.get("XkbOptions", ""),
            )
        data = envfile.parse(self.root.read(DEFAULT_KEYBOARD))
        return X11(
            data.get("XKBLAYOUT", ""),
            data.get("XKBMODEL", ""),
            data.get("XKBVARIANT", ""),
            data.get("XKBOPTIONS", ""),
        )

    @staticmethod
    def check_x11(kb: X11) -> None:
        for what, value in (
            ("layout", kb.layout), ("model", kb.model),
            ("variant", kb.variant), ("options", kb.options),
        ):  # fmt: skip
            if value and not _KB_NAME.fullmatch(value):
                raise invalid(f"Invalid X11 keyboard {what} '{value}'")
        if not kb.layout and (kb.model or kb.variant or kb.options):
            raise invalid("An X11 keyboard model, variant or options needs a layout")

    def set_x11(self, kb: X11) -> None:
        if kb.layout:
            lines = [
                "# Written by dynamod-hostnamed (localectl set-x11-keymap).",
                'Section "InputClass"',
                '        Identifier "system-keyboard"',
                '        MatchIsKeyboard "on"',
            ]
            for opt, value in (
                ("XkbLayout", kb.layout), ("XkbModel", kb.model),
                ("XkbVariant", kb.variant), ("XkbOptions", kb.options),
            ):  # fmt: skip
                if value:
                    lines.append(f'        Option "{opt}" "{value}"')
            lines.append("EndSection")
            self.root.write(XORG_KEYBOARD, "\n".join(lines) + "\n")
        else:
            self.root.remove(XORG_KEYBOARD)
        if self.root.exists(DEFAULT_KEYBOARD) or self.root.is_debian():
            changes: dict[str, str | None] = {
                "XKBMODEL": kb.model, "XKBLAYOUT": kb.layout,
                "XKBVARIANT": kb.variant, "XKBOPTIONS": kb.options,
            }  # fmt: skip
            text = envfile.update(self.root.read(DEFAULT_KEYBOARD), changes)
            # Debian's keyboard-configuration reads the keys even when empty.
            for key in changes:
                if f"{key}=" not in text:
                    text += f'{key}=""\n'
            self.root.write(DEFAULT_KEYBOARD, text)

    # --- conversion (convert=true) -------------------------------------------

    def _model_map(self) -> list[list[str]]:
        text = self.root.read(KBD_MODEL_MAP)
        if text is None and str(self.root.base) != "/":
            text = Root("/").read(KBD_MODEL_MAP)
        rows = []
        for line in (text or "").splitlines():
            if line.startswith("#") or not line.strip():
                continue
            fields = line.split()
            if len(fields) >= 5:
                rows.append([("" if f == "-" else f) for f in fields[:5]])
        return rows

    def x11_for_keymap(self, keymap: str) -> X11 | None:
        """The X11 keyboard of ``keymap`` in the keyboard model map, or None."""
        for row in self._model_map():
            if row[0] == keymap:
                return X11(row[1], row[2], row[3], row[4])
        return None

    def keymap_for_x11(self, kb: X11) -> str | None:
        """The console keymap closest to ``kb``: a row with the same layout and
        variant wins over one with the same layout only."""
        best: tuple[int, str] | None = None
        for row in self._model_map():
            if row[1] != kb.layout:
                continue
            score = 2 if row[3] == kb.variant else 1
            if row[2] == kb.model:
                score += 1
            if best is None or score > best[0]:
                best = (score, row[0])
        return best[1] if best else None
