"""``dynamodctl analyze``: how the boot went, from svmgr's GetBootTimes.

Every function but :func:`analyze` is pure (data in, text out) so that the
output can be checked on recorded data. Times in the output are seconds
after svmgr started (its first service could be pending no earlier), the
kernel and initramfs phases where dynamod-init recorded them.
"""

from __future__ import annotations

import sys

from dynamod.ctl.commands import connect, fetch_pages, out
from dynamod.ctl.exits import OK, UNKNOWN_SERVICE, USAGE, CtlError

WHAT = ("time", "blame", "critical-chain", "plot", "dot")


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def secs(x: float) -> str:
    if x >= 60:
        return f"{int(x // 60)}min {x % 60:.3f}s"
    return f"{x:.3f}s" if x >= 0.001 or x == 0 else f"{x * 1000:.3f}ms"


def relative(head: dict, services: list[dict]) -> list[dict]:
    """Entries with ``pending``/``started``/``ready`` made relative to
    svmgr's start (None stays None)."""
    t0 = head.get("manager_start") or 0.0
    rel = []
    for s in services:
        r = dict(s)
        for k in ("pending", "started", "ready"):
            r[k] = s[k] - t0 if _num(s.get(k)) else None
        rel.append(r)
    return rel


def summary(head: dict, services: list[dict]) -> str:
    """``analyze`` (``analyze time``): the phases and their total."""
    rel = relative(head, services)
    ready = [s for s in rel if s["ready"] is not None]
    t0 = head.get("manager_start") or 0.0
    parts: list[tuple[str, float]] = []
    init_start, ramfs_end = head.get("init_start"), head.get("initramfs_end")
    if _num(init_start):
        parts.append(("kernel", init_start))
        begin = init_start
        if _num(ramfs_end) and ramfs_end >= init_start:
            parts.append(("initramfs", ramfs_end - init_start))
            begin = ramfs_end
        parts.append(("init", max(0.0, t0 - begin)))
    lines = []
    if not ready:
        lines.append("no service became ready since svmgr started")
    else:
        last = max(ready, key=lambda s: s["ready"])
        parts.append(("svmgr", last["ready"]))
        text = " + ".join(f"{secs(v)} ({k})" for k, v in parts)
        if len(parts) > 1:
            text += f" = {secs(sum(v for _, v in parts))}"
        lines.append(f"Startup finished in {text}")
        lines.append(f"last service ready: {last['name']} at +{secs(last['ready'])} after svmgr started")
    not_ready = sorted((s for s in rel if s["ready"] is None and s["pending"] is not None),
                       key=lambda s: s["name"])
    lines.append(f"{len(ready)} of {len(rel)} services became ready"
                 + (": not " + ", ".join(f"{s['name']} ({s['state']})" for s in not_ready[:10])
                    + (" ..." if len(not_ready) > 10 else "") if not_ready else ""))
    return "\n".join(lines) + "\n"


def blame(head: dict, services: list[dict]) -> str:
    """Services by the time from their start to ready, longest first."""
    rows = []
    for s in relative(head, services):
        if s["ready"] is not None and s["started"] is not None:
            rows.append((s["ready"] - s["started"], s["name"]))
    rows.sort(key=lambda r: (-r[0], r[1]))
    width = max((len(secs(t)) for t, _ in rows), default=0)
    return "".join(f"{secs(t).rjust(width)} {n}\n" for t, n in rows)


def chain(head: dict, services: list[dict], name: str | None) -> list[tuple[int, dict]]:
    """The critical chain of ``name`` (default: the service ready last):
    ``(depth, entry)`` from ``name`` down, each the dependency that became
    ready last before the one above it started."""
    rel = {s["name"]: s for s in relative(head, services)}
    if name is None:
        ready = [s for s in rel.values() if s["ready"] is not None]
        if not ready:
            return []
        name = max(ready, key=lambda s: s["ready"])["name"]
    if name not in rel:
        raise CtlError(UNKNOWN_SERVICE, f"no such service: {name}")
    out_: list[tuple[int, dict]] = []
    seen: set[str] = set()
    cur: dict | None = rel[name]
    depth = 0
    while cur is not None and cur["name"] not in seen:
        seen.add(cur["name"])
        out_.append((depth, cur))
        start = cur["started"] if cur["started"] is not None else cur["ready"]
        best = None
        for d in cur.get("after") or []:
            ds = rel.get(d)
            if ds is None or ds["ready"] is None or start is None or ds["ready"] > start + 1e-6:
                continue
            if best is None or ds["ready"] > best["ready"]:
                best = ds
        cur = best
        depth += 1
    return out_


def critical_chain(head: dict, services: list[dict], name: str | None, unicode: bool = True) -> str:
    items = chain(head, services, name)
    if not items:
        return "no service became ready since svmgr started\n"
    lines = ['The time a service became ready is after "@", the time it took from start to ready',
             'after "+" (seconds after svmgr started).', ""]
    for depth, s in items:
        prefix = ("  " * (depth - 1) + ("└─" if unicode else "`-")) if depth else ""
        text = s["name"]
        if s["ready"] is not None:
            text += f" @{secs(s['ready'])}"
            if s["started"] is not None:
                text += f" +{secs(s['ready'] - s['started'])}"
        else:
            text += f" ({s.get('state')})"
        lines.append(prefix + text)
    return "\n".join(lines) + "\n"


# --- DOT ---------------------------------------------------------------------------

_STATE_FILL = {"running": "#c8e6c9", "exited": "#e0f2f1", "failed": "#ffcdd2", "blocked": "#ffe0b2"}


def dot(services: list[dict]) -> str:
    """The dependency graph: an edge A -> B when A depends on B; requires
    solid black, wants dashed blue, ordering-only (after / before) dotted
    grey. Nodes are filled by state."""
    lines = ["digraph dynamod {", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fillcolor="#eeeeee", fontname="sans-serif"];',
             '  edge [fontname="sans-serif"];']
    for s in sorted(services, key=lambda x: str(x.get("name"))):
        fill = _STATE_FILL.get(str(s.get("state")), "#eeeeee")
        lines.append(f'  {_q(s["name"])} [fillcolor="{fill}", tooltip={_q(str(s.get("state")))}];')
    for s in sorted(services, key=lambda x: str(x.get("name"))):
        req = set(s.get("requires") or [])
        wants = set(s.get("wants") or []) - req
        for d in sorted(req):
            lines.append(f"  {_q(s['name'])} -> {_q(d)} [color=black];")
        for d in sorted(wants):
            lines.append(f"  {_q(s['name'])} -> {_q(d)} [style=dashed, color=blue];")
        for d in sorted(set(s.get("after") or []) - req - wants):
            lines.append(f"  {_q(s['name'])} -> {_q(d)} [style=dotted, color=grey50];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- SVG ---------------------------------------------------------------------------

ROW = 18  # px per service
LEFT = 24  # room for the first grid label
BAR_W = 900  # px for the whole timeline
TOP = 60
PHASES = (("pending", "#90caf9", "pending: waiting for dependencies"),
          ("starting", "#ffb74d", "starting: started, not yet ready"),
          ("ready", "#81c784", "ready"))


def _x(t: float, scale: float) -> float:
    return round(LEFT + t * scale, 2)


def plot(head: dict, services: list[dict]) -> str:
    """An SVG timeline: one row per service that became pending, ordered by
    when it did; its pending, starting and ready phases coloured, its name
    and time to ready beside the bar."""
    escape = _esc
    rel = [s for s in relative(head, services) if s["pending"] is not None]
    rel.sort(key=lambda s: (s["pending"], s["started"] if s["started"] is not None else 1e18, s["name"]))
    now = (head.get("now") or 0.0) - (head.get("manager_start") or 0.0)
    ends = [s["ready"] for s in rel if s["ready"] is not None]
    end = max(ends) if ends else max([s["started"] or 0.0 for s in rel] + [0.0])
    end = max(end * 1.05, 0.001)
    scale = BAR_W / end
    label_w = 260
    width = LEFT + BAR_W + label_w
    height = TOP + ROW * max(len(rel), 1) + 30
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
         f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
         f'<text x="{LEFT}" y="16" font-size="14" font-weight="bold">dynamod boot: '
         f'{len(ends)} of {len(rel)} services ready in {escape(secs(max(ends) if ends else 0.0))}</text>']
    lx = LEFT
    for _key, color, text in PHASES:
        o.append(f'<rect x="{lx}" y="24" width="12" height="10" fill="{color}"/>')
        o.append(f'<text x="{lx + 16}" y="33">{escape(text)}</text>')
        lx += 16 + 7 * len(text) + 20
    step = _grid_step(end)
    t = 0.0
    while t <= end + 1e-9:
        x = _x(t, scale)
        o.append(f'<line x1="{x}" y1="{TOP - 6}" x2="{x}" y2="{height - 24}" stroke="#dddddd"/>')
        o.append(f'<text x="{x}" y="{TOP - 9}" text-anchor="middle" fill="#666666">{escape(secs(t))}</text>')
        t += step
    for i, s in enumerate(rel):
        y = TOP + i * ROW
        if i % 2:
            o.append(f'<rect x="0" y="{y}" width="{width}" height="{ROW}" fill="#f7f7f7"/>')
        started = s["started"]
        ready = s["ready"]
        segs = [(s["pending"], started if started is not None else (ready if ready is not None else now),
                 PHASES[0][1])]
        if started is not None:
            segs.append((started, ready if ready is not None else now, PHASES[1][1]))
        if ready is not None:
            segs.append((ready, end, PHASES[2][1]))
        for a, b, color in segs:
            a, b = max(0.0, min(a, end)), max(0.0, min(b, end))
            o.append(f'<rect x="{_x(a, scale)}" y="{y + 3}" width="{max(round((b - a) * scale, 2), 1)}" '
                     f'height="{ROW - 6}" fill="{color}"/>')
        took = f" +{secs(ready - started)}" if ready is not None and started is not None else \
            f" ({s['state']})" if ready is None else ""
        o.append(f'<text x="{LEFT + BAR_W + 6}" y="{y + ROW - 5}">{escape(s["name"] + took)}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def _esc(text: str) -> str:
    # xml.sax.saxutils would import urllib.request (and http, email): ~20 ms.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _grid_step(end: float) -> float:
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300):
        if end / step <= 12:
            return float(step)
    return 600.0


# --- the command ---------------------------------------------------------------------


def analyze(socket: str | None, what: str | None, name: str | None) -> int:
    what = what or "time"
    if name is not None and what != "critical-chain":
        raise CtlError(USAGE, f"analyze {what} takes no NAME (only critical-chain does)")
    with connect(socket) as conn:
        head, services = fetch_pages(conn, "GetBootTimes", "BootTimes")
    if what == "time":
        out(summary(head, services))
    elif what == "blame":
        out(blame(head, services))
    elif what == "critical-chain":
        enc = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "")
        out(critical_chain(head, services, name, unicode=enc == "utf8"))
    elif what == "plot":
        out(plot(head, services))
    else:
        out(dot(services))
    return OK
