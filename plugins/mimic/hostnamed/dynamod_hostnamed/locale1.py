"""org.freedesktop.locale1 on /org/freedesktop/locale1 (org.freedesktop.locale1(5))."""

from __future__ import annotations

from dynamod_mimic_common import CallContext, Interface, Method, ObjectServer, Prop

from dynamod_hostnamed.bushelp import setter
from dynamod_hostnamed.localefiles import X11, LocaleFiles

PATH = "/org/freedesktop/locale1"
NAME = "org.freedesktop.locale1"
_X11_PROPS = ("X11Layout", "X11Model", "X11Variant", "X11Options")
_VC_PROPS = ("VConsoleKeymap", "VConsoleKeymapToggle")


class Locale:
    def __init__(self, files: LocaleFiles, server: ObjectServer) -> None:
        self.files = files
        self.server = server

    def changed(self, *names: str) -> None:
        self.server.properties_changed(PATH, LOCALE1, self, names)


@setter("setting the system locale")
def set_locale(lc: Locale, ctx: CallContext, assignments: list[str], interactive: bool) -> None:
    values = lc.files.check_locale(assignments)
    if [f"{k}={v}" for k, v in values.items()] == lc.files.locale():
        return
    lc.files.set_locale(values)
    lc.changed("Locale")


@setter("setting the keyboard layout")
def set_vconsole_keyboard(lc: Locale, ctx: CallContext, keymap: str, toggle: str, convert: bool,
                          interactive: bool) -> None:  # fmt: skip
    lc.files.check_keymap(keymap, "keymap")
    lc.files.check_keymap(toggle, "toggle keymap")
    x11 = None
    if convert:
        x11 = lc.files.x11_for_keymap(keymap) if keymap else X11()
    lc.files.set_vconsole(keymap, toggle)
    names = list(_VC_PROPS)
    if x11 is not None:
        lc.files.set_x11(x11)
        names += _X11_PROPS
    lc.changed(*names)


@setter("setting the keyboard layout")
def set_x11_keyboard(lc: Locale, ctx: CallContext, layout: str, model: str, variant: str,
                     options: str, convert: bool, interactive: bool) -> None:  # fmt: skip
    kb = X11(layout, model, variant, options)
    LocaleFiles.check_x11(kb)
    keymap = None
    if convert:
        keymap = lc.files.keymap_for_x11(kb) if layout else ""
    lc.files.set_x11(kb)
    names = list(_X11_PROPS)
    if keymap is not None:
        lc.files.set_vconsole(keymap, "")
        names += _VC_PROPS
    lc.changed(*names)


LOCALE1 = Interface(
    NAME,
    methods=[
        Method("SetLocale", "asb", "", set_locale, ("locale", "interactive")),
        Method("SetVConsoleKeyboard", "ssbb", "", set_vconsole_keyboard,
               ("keymap", "keymap_toggle", "convert", "interactive")),
        Method("SetX11Keyboard", "ssssbb", "", set_x11_keyboard,
               ("layout", "model", "variant", "options", "convert", "interactive")),
    ],
    props=[
        Prop("Locale", "as", lambda lc: lc.files.locale()),
        Prop("X11Layout", "s", lambda lc: lc.files.x11().layout),
        Prop("X11Model", "s", lambda lc: lc.files.x11().model),
        Prop("X11Variant", "s", lambda lc: lc.files.x11().variant),
        Prop("X11Options", "s", lambda lc: lc.files.x11().options),
        Prop("VConsoleKeymap", "s", lambda lc: lc.files.vconsole()[0]),
        Prop("VConsoleKeymapToggle", "s", lambda lc: lc.files.vconsole()[1]),
    ],
)
