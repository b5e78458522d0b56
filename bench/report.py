"""Tables: Markdown for the terminal and docs/performance.md, and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Stat

Cell = Stat | str
TIMES = "\u00d7"  # multiplication sign
DASH = "\u2013"  # en dash
DIVIDE = "\u00f7"


@dataclass
class Row:
    label: str
    cells: dict[str, Cell] = field(default_factory=dict)
    # Print ratios against dynamod (off for counts where a ratio means nothing).
    ratio: bool = True

    def stat(self, backend: str, unit: str) -> Stat:
        cell = self.cells.get(backend)
        if not isinstance(cell, Stat):
            cell = self.cells[backend] = Stat(unit)
        return cell


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Free text printed after the table (e.g. another tool's own table).
    appendix: str = ""

    def row(self, label: str, ratio: bool = True) -> Row:
        r = Row(label, ratio=ratio)
        self.rows.append(r)
        return r

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": self.columns,
            "rows": [
                {
                    "label": r.label,
                    "cells": {
                        k: v.to_json() if isinstance(v, Stat) else v for k, v in r.cells.items()
                    },
                }
                for r in self.rows
            ],
            "notes": self.notes,
            "appendix": self.appendix,
        }


def fmt_value(v: float, unit: str) -> str:
    if unit == "s":
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if unit == "ms":
        return f"{v:.1f}" if v < 100 else f"{v:.0f}"
    if unit == "MB":
        return f"{v:.1f}"
    if unit == "CPU s":
        return f"{v:.2f}"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"


def fmt_stat(s: Stat) -> str:
    if s.median is None:
        return "failed: " + (s.failures[0] if s.failures else "no data")
    text = f"{fmt_value(s.median, s.unit)} {s.unit}".rstrip()
    if len(s.samples) > 1:
        text += f" [{fmt_value(min(s.samples), s.unit)}{DASH}{fmt_value(max(s.samples), s.unit)}]"
    if s.failures:
        text += f" ({len(s.failures)} failed)"
    return text


def fmt_ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den == 0:
        return ""
    r = num / den
    return f"{r:.2f}{TIMES}" if r < 10 else f"{r:.0f}{TIMES}"


def render(table: Table) -> str:
    """Markdown: dynamod first, then the floor with dynamod ÷ floor, then each
    peer with the peer's figure ÷ dynamod's."""
    head = ["", *table.columns]
    if "floor" in table.columns:
        head.insert(head.index("floor") + 1, f"dynamod {DIVIDE} floor")
    lines = [f"### {table.title}", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in table.rows:
        dyn = r.cells.get("dynamod")
        dmed = dyn.median if isinstance(dyn, Stat) else None
        out = [r.label]
        for col in table.columns:
            cell = r.cells.get(col, "—")
            if isinstance(cell, Stat):
                text = fmt_stat(cell)
                if (
                    r.ratio
                    and col not in ("dynamod", "floor")
                    and (q := fmt_ratio(cell.median, dmed))
                ):
                    text += f" ({q})"
            else:
                text = cell
            out.append(text)
            if col == "floor":
                fl = r.cells.get("floor")
                out.append(fmt_ratio(dmed, fl.median) if r.ratio and isinstance(fl, Stat) else "")
        lines.append("| " + " | ".join(out) + " |")
    if table.notes:
        lines.append("")
        lines += [f"- {n}" for n in table.notes]
    if table.appendix:
        lines += ["", table.appendix.rstrip()]
    return "\n".join(lines) + "\n"


def render_all(header: str, tables: list[Table]) -> str:
    return header.rstrip() + "\n\n" + "\n".join(render(t) for t in tables)


def write_json(path: Path, meta: dict[str, Any], tables: list[Table]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**meta, "measurements": {t.key: t.to_json() for t in tables}}
    path.write_text(json.dumps(data, indent=1) + "\n")
