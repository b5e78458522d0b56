"""Human-readable output: tables, ``status`` blocks, the supervisor tree.

Pure functions from server maps to text, so tests can call them with
``Style(color=True)`` without a terminal. Plain ANSI escapes instead of rich:
rich's console costs ~60-90 ms of start-up (notes §4.6). Every field is read
with ``.get``: a newer server may omit or add keys.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import IO, Any

RESET = "\033[0m"
BOLD = "1"
DIM = "2"
RED = "31"
GREEN = "32"
YELLOW = "33"
BLUE = "34"

STATE_COLORS = {
    "running": GREEN,
    "exited": GREEN,
    "failed": RED,
    "blocked": RED,
    "restarting": YELLOW,
    "pending": YELLOW,
    "starting": YELLOW,
    "waiting-ready": YELLOW,
    "stopping": YELLOW,
    "stopped": DIM,
}
UP_STATES = frozenset({"running", "exited"})  # dependencies are satisfied by these
DOWN_STATES = frozenset({"stopped", "failed", "blocked"})

STATUS_LOG_LINES = 10  # log lines under `status`, as systemctl shows


class Style:
    """How to decorate output: ANSI colour, and box-drawing characters."""

    def __init__(self, color: bool = False, unicode: bool = True) -> None:
        self.color = color
        self.unicode = unicode

    @classmethod
    def for_stream(cls, stream: IO[str]) -> Style:
        """Colour only on a terminal, and never with NO_COLOR set
        (https://no-color.org) or TERM=dumb."""
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        return cls(color=color, unicode=encoding.startswith("utf"))

    def paint(self, text: str, *codes: str) -> str:
        if not self.color or not codes or not text:
            return text
        return f"\033[{';'.join(codes)}m{text}{RESET}"

    def state(self, state: str) -> str:
        color = STATE_COLORS.get(state)
        return self.paint(state, color) if color else state

    @property
    def dot(self) -> str:
        return "●" if self.unicode else "*"


# --- small formatters ----------------------------------------------------------


def age(seconds: float) -> str:
    """A compact elapsed time: ``45s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def duration(seconds: float | None) -> str:
    """A configured duration the way config files write it: ``500ms``, ``30s``,
    ``2m``, ``1h``."""
    if not isinstance(seconds, (int, float)):
        return "?"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def timestamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _since(info: dict, now: float) -> str:
    since = info.get("since")
    return age(now - since) if _num(since) and since > 0 else "-"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[tuple[str, str | None]]], style: Style
) -> list[str]:
    """Aligned columns; each cell is ``(text, colour or None)``. Widths come
    from the plain text, so colour codes do not break alignment; lines have
    no trailing blanks."""
    rows = list(rows)
    widths = [len(h) for h in headers]
    for row in rows:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))

    def line(cells: Iterable[tuple[str, str | None]]) -> str:
        # Padding goes outside the colour codes, so rstrip() can drop it.
        return "  ".join(
            style.paint(t, c) + " " * (widths[i] - len(t)) if c else t.ljust(widths[i])
            for i, (t, c) in enumerate(cells)
        ).rstrip()

    return [line((h, BOLD) for h in headers)] + [line(row) for row in rows]


# --- commands' output -----------------------------------------------------------


def service_list(services: list[dict], now: float, style: Style) -> str:
    """``list``: one row per service, then a count per state."""
    rows = []
    counts: dict[str, int] = {}
    for s in services:
        state = str(s.get("state", "?"))
        counts[state] = counts.get(state, 0) + 1
        name = str(s.get("name", "?"))
        if _pulled_in(s):
            name += "*"
        rows.append(
            [
                (name, None),
                (state, STATE_COLORS.get(state)),
                (_text(s.get("pid")), None),
                (_since(s, now), None),
                (_text(s.get("restarts", 0)), None),
                (_text(s.get("supervisor")), None),
                (str(s.get("reason") or ""), None),
            ]
        )
    lines = table(
        ["NAME", "STATE", "PID", "SINCE", "RESTARTS", "SUPERVISOR", "REASON"], rows, style
    )
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    total = len(services)
    lines.append("")
    lines.append(
        f"{total} service{'s' if total != 1 else ''}" + (f": {summary}" if summary else "")
    )
    if any(_pulled_in(s) for s in services):
        lines.append("* not started explicitly: active only while something needs it")
    return "\n".join(lines) + "\n"


def _pulled_in(info: dict) -> bool:
    """Active only because an explicitly active service requires or wants it."""
    return info.get("explicit") is False and info.get("state") not in DOWN_STATES


# Service-map keys shown by `status` in their own lines; the rest of the map
# (keys a newer server adds) is shown under its own name at the end.
_STATUS_KEYS = {
    "name", "description", "state", "substate", "since", "pid", "main_pid", "type",
    "readiness", "supervisor", "restarts", "reason", "exit", "status_text", "enabled",
    "explicit", "requires", "wants", "after", "before", "source", "extra",
    "restart_policy", "restart_budget", "load_error", "job", "control_pids",
    "masked", "enablement", "dropin",
}  # fmt: skip


def service_status(info: dict, logs: list | None, now: float, style: Style) -> str:
    """``status``: a compact ``systemctl status``."""
    name = str(info.get("name", "?"))
    state = str(info.get("state", "?"))
    head = f"{style.paint(style.dot, STATE_COLORS.get(state, ''))} {style.paint(name, BOLD)}"
    if info.get("description"):
        head += f" - {info['description']}"
    fields: list[tuple[str, str]] = []

    state_text = style.state(state)
    if info.get("substate"):
        state_text += f" ({info['substate']})"
    since = info.get("since")
    if _num(since) and since > 0:
        state_text += f" since {timestamp(since)}; {age(now - since)} ago"
    fields.append(("State", state_text))
    if info.get("reason"):
        fields.append(("Reason", str(info["reason"])))
    if info.get("exit"):
        fields.append(("Last exit", str(info["exit"])))
    pid, main_pid = info.get("pid"), info.get("main_pid")
    if pid is not None:
        fields.append(
            ("PID", f"{pid} (main {main_pid})" if main_pid not in (None, pid) else str(pid))
        )
    kind = _text(info.get("type"))
    if info.get("readiness"):
        kind += f", readiness {info['readiness']}"
    fields.append(("Type", kind))
    activation = "explicit" if info.get("explicit") else "only while needed by others"
    if info.get("masked"):
        activation += ", masked (cannot be started; 'dynamodctl unmask' allows it)"
    elif "enabled" in info:
        activation += ", enabled at boot" if info.get("enabled") else ", not enabled at boot"
    fields.append(("Activation", activation))
    fields.append(("Supervisor", _text(info.get("supervisor"))))
    restarts = _text(info.get("restarts", 0))
    budget = info.get("restart_budget")
    if isinstance(budget, list) and len(budget) == 2:
        restarts += f" (budget {_text(budget[0])} in {duration(budget[1])}"
        restarts += f", policy {info['restart_policy']})" if info.get("restart_policy") else ")"
    fields.append(("Restarts", restarts))
    if info.get("load_error"):
        fields.append(("Config error", str(info["load_error"])))
    job = info.get("job")
    if isinstance(job, dict):
        fields.append(("Job", f"{_text(job.get('id'))} ({_text(job.get('type'))}, running)"))
    if info.get("control_pids"):
        fields.append(("Control PIDs", _text(info["control_pids"])))
    if info.get("status_text"):
        fields.append(("Status", str(info["status_text"])))
    for key in ("requires", "wants", "after", "before"):
        if info.get(key):
            fields.append((key.capitalize(), _text(info[key])))
    if info.get("source"):
        fields.append(("Config", str(info["source"])))
    if info.get("dropin"):
        fields.append(("Override", str(info["dropin"])))
    extra = info.get("extra")
    if isinstance(extra, dict):
        fields.extend((str(k), _text(v)) for k, v in sorted(extra.items()))
    fields.extend((str(k), _text(v)) for k, v in sorted(info.items()) if k not in _STATUS_KEYS)

    width = max(len(label) for label, _ in fields)
    lines = [head] + [f"  {label.rjust(width)}: {value}" for label, value in fields]
    if logs:
        lines.append("")
        lines.extend(log_lines(logs, style))
    return "\n".join(lines) + "\n"


def log_lines(lines: Iterable[Any], style: Style) -> list[str]:
    """``[time, text]`` pairs as ``YYYY-mm-dd HH:MM:SS.mmm text``."""
    out = []
    for item in lines:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            continue
        t, text = item
        stamp = f"{timestamp(t)}.{int((t % 1) * 1000):03d}" if _num(t) else "?"
        out.append(f"{style.paint(stamp, DIM)} {text}")
    return out


def tree(root: dict, now: float, style: Style) -> str:
    """``tree``: supervisors with strategy, restarts/max in window and
    escalations (the ``failures`` field), services with their state."""
    branch, last, pipe, blank = (
        ("├─ ", "└─ ", "│  ", "   ") if style.unicode else ("|- ", "`- ", "|  ", "   ")
    )
    lines: list[str] = []

    def walk(node: dict, prefix: str, connector: str, child_prefix: str) -> None:
        lines.append(prefix + connector + _tree_node(node, now, style))
        children = node.get("children")
        if not isinstance(children, list):
            return
        for i, child in enumerate(children):
            if isinstance(child, dict):
                end = i == len(children) - 1
                walk(child, prefix + child_prefix, last if end else branch, blank if end else pipe)

    walk(root, "", "", "")
    return "\n".join(lines) + "\n"


def _tree_node(node: dict, now: float, style: Style) -> str:
    name = str(node.get("name", "?"))
    state = str(node.get("state", "?"))
    reason = f" ({node['reason']})" if node.get("reason") else ""
    if node.get("kind") == "supervisor":
        head = f"{style.paint(name, BOLD)} [{node.get('strategy', '?')}]: {style.state(state)}{reason}"
        window = duration(node.get("max_restart_window"))
        if node.get("escalate", True):
            # One budget for all children; spent, the supervisor fails.
            parts = [head,
                     f"restarts {_text(node.get('restarts'))}/{_text(node.get('max_restarts'))} in {window}",
                     f"escalations {_text(node.get('failures', 0))}"]
        else:
            parts = [head, f"restarts {_text(node.get('restarts'))}",
                     f"budget {_text(node.get('max_restarts'))} in {window} per child"]
        last = node.get("last_failure")
        if _num(last) and last > 0:
            parts[-1] += f" (last {age(now - last)} ago)"
        return ", ".join(parts)
    text = f"{name}: {style.state(state)}{reason}"
    if node.get("restarts"):
        text += f", restarts {node['restarts']}"
    return text


def reload_result(body: dict) -> str:
    lines = []
    for key in ("added", "removed", "changed"):
        names = body.get(key) or []
        if names:
            lines.append(f"{key}: {', '.join(map(str, names))}")
    if not lines:
        lines.append("reloaded: no changes")
    lines.extend(str(w) for w in body.get("warnings") or [])
    return "\n".join(lines) + "\n"
