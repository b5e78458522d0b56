"""dynamod: an init system and service manager built as a plugin framework.

Plugins implement the hooks of :mod:`dynamod.hookspecs` with these markers::

    import dynamod

    @dynamod.hookimpl
    def dynamod_readiness_types(): ...
"""


TYPE_CHECKING = False  # typing costs ~8 ms; dynamodctl and PID 1 import this module
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "ctl_hookimpl", "hookimpl"]


def __getattr__(name: str) -> "Any":
    # The markers import pluggy; dynamodctl's hot paths and PID 1 import
    # dynamod without needing them, so they are created on first use.
    if name in ("hookimpl", "ctl_hookimpl"):
        import pluggy

        marker = pluggy.HookimplMarker("dynamod" if name == "hookimpl" else "dynamodctl")
        globals()[name] = marker
        return marker
    raise AttributeError(f"module 'dynamod' has no attribute {name!r}")
