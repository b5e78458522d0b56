"""dynamod: an init system and service manager built as a plugin framework.

Plugins implement the hooks of :mod:`dynamod.hookspecs` with these markers::

    import dynamod

    @dynamod.hookimpl
    def dynamod_readiness_types(): ...
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("dynamod")
ctl_hookimpl = pluggy.HookimplMarker("dynamodctl")

__all__ = ["__version__", "ctl_hookimpl", "hookimpl"]
