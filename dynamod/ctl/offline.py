"""Commands that need no daemon: ``check`` and ``plugins``.

They load plugins (``check`` the daemon-side ``dynamod`` group, so that the
readiness types and config sections plugins add are validated exactly as the
service manager will), which is why they are never on the fast path.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from dynamod.ctl import render
from dynamod.ctl.exits import FAILED, OK

if TYPE_CHECKING:
    from dynamod.plugins import PluginHost

DEFAULT_CONFIG_DIR = "/etc/dynamod"


def config_dir(explicit: str | None) -> str:
    """``--config-dir``, else ``$DYNAMOD_CONFIG_DIR``, else /etc/dynamod:
    the same default as dynamod-svmgr."""
    return explicit or os.environ.get("DYNAMOD_CONFIG_DIR") or DEFAULT_CONFIG_DIR


def check(explicit_dir: str | None, as_json: bool = False) -> int:
    """Validate a config tree offline; print every diagnostic and a summary
    (``as_json``: one JSON object per finding instead). Exit 1 when there
    are errors (warnings alone pass)."""
    from dynamod.config.extensions import collect_extensions
    from dynamod.config.loader import PLUGINS_SOURCE, load_config
    from dynamod.config.model import Diagnostic, printable
    from dynamod.plugins import make_plugin_host

    root = config_dir(explicit_dir)
    host = make_plugin_host("dynamod")
    cfg = load_config(root, collect_extensions(host), strict_dir=True, host_checks=True)
    findings = [Diagnostic(PLUGINS_SOURCE, "", str(p), "warning") for p in host.problems]
    findings += cfg.diagnostics
    errors = sum(d.severity == "error" for d in findings)
    if as_json:
        import json

        sys.stdout.writelines(json.dumps(_finding(d)) + "\n" for d in findings)
    else:
        lines = [str(d) for d in findings]
        lines.append(
            f"{printable(root)}: {_n(len(cfg.services), 'service')}, "
            f"{_n(len(cfg.supervisors), 'supervisor')}; "
            f"{_n(errors, 'error')}, {_n(len(findings) - errors, 'warning')}"
        )
        sys.stdout.write("\n".join(lines) + "\n")
    return FAILED if errors else OK


def _finding(d: Any) -> dict[str, Any]:
    """One ``check --json`` line (docs/cli.md)."""
    return {"severity": d.severity, "file": d.file, "key": d.key, "line": d.line, "message": d.message}


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def plugin_report(ctl_host: PluginHost | None) -> dict[str, Any]:
    """Installed plugins of both entry-point groups and their load problems.
    ``ctl_host`` is the dynamodctl host already loaded for this run (loading
    it again would register every plugin twice)."""
    from dynamod.plugins import make_plugin_host

    hosts = [
        ("dynamod", make_plugin_host("dynamod")),
        ("dynamodctl", ctl_host or make_plugin_host("dynamodctl")),
    ]
    report: dict[str, Any] = {"plugins": [], "problems": []}
    for group, host in hosts:
        for info in sorted(host.info.values(), key=lambda i: i.name):
            report["plugins"].append(
                {
                    "group": group,
                    "name": info.name,
                    "distribution": info.distribution,
                    "version": info.version,
                    "hooks": list(info.hooks),
                }
            )
        for p in host.problems:
            report["problems"].append({"group": group, "name": p.name, "message": p.message})
    return report


def plugins(ctl_host: PluginHost | None, as_json: bool) -> int:
    """Exit 1 when a plugin failed to load, so that provisioning scripts notice."""
    report = plugin_report(ctl_host)
    if as_json:
        import json

        sys.stdout.write(json.dumps(report) + "\n")
        return FAILED if report["problems"] else OK
    style = render.Style.for_stream(sys.stdout)
    lines: list[str] = []
    if report["plugins"]:
        rows = [
            [
                (p["group"], None),
                (p["name"], None),
                (p["distribution"] or "-", None),
                (p["version"] or "-", None),
                (", ".join(p["hooks"]) or "-", None),
            ]
            for p in report["plugins"]
        ]
        lines += render.table(["GROUP", "NAME", "DISTRIBUTION", "VERSION", "HOOKS"], rows, style)
    else:
        lines.append("no plugins loaded")
    if os.environ.get("DYNAMOD_PLUGINS_AUTOLOAD", "1") == "0":
        lines.append("(entry points not loaded: DYNAMOD_PLUGINS_AUTOLOAD=0)")
    if os.environ.get("DYNAMOD_DISABLE_PLUGINS"):
        lines.append(f"(disabled: DYNAMOD_DISABLE_PLUGINS={os.environ['DYNAMOD_DISABLE_PLUGINS']})")
    if report["problems"]:
        lines.append("")
        lines.append(style.paint("problems:", render.RED))
        lines += [
            f"  {p['group']}: plugin {p['name']!r}: {p['message']}" for p in report["problems"]
        ]
    sys.stdout.write("\n".join(lines) + "\n")
    return FAILED if report["problems"] else OK
