"""Benchmark results: rows of min / median / max per variant and metric, grouped in sections; the printed
table and the JSON layout."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One line of the table: a metric of a variant, as min / median / max (or a single value)."""

    section: str
    variant: str
    metric: str
    median: float | None
    min: float | None = None
    max: float | None = None
    unit: str = ""
    note: str = ""


@dataclass
class Section:
    """One section's rows, its raw details for the JSON, and why it was skipped (if it was)."""

    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""

    def add(self, variant: str, metric: str, values: list[float] | float | None, unit: str = "",
            note: str = "") -> None:
        """Add a row; a list of values becomes min / median / max."""
        if isinstance(values, list):
            s = stats(values)
            self.rows.append(Row(self.name, variant, metric, s["median"], s["min"], s["max"], unit, note))
        else:
            self.rows.append(Row(self.name, variant, metric, values, unit=unit, note=note))


def stats(values: list[float]) -> dict[str, float]:
    """min / median / max / n of a list of numbers."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def fmt(x: float | None) -> str:
    """A table cell: whole numbers from 1000 up, else about four significant figures."""
    if x is None:
        return ""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}" if abs(x) < 10 else f"{x:.1f}"


def print_table(sections: list[Section]) -> None:
    """Print every row and every skipped section as one table (rich's where installed)."""
    header = ["section", "variant", "metric", "min", "median", "max", "unit", "note"]
    lines = [[r.section, r.variant, r.metric, fmt(r.min), fmt(r.median), fmt(r.max), r.unit, r.note]
             for s in sections for r in s.rows]
    lines += [[s.name, "-", "skipped", "", "", "", "", s.skipped] for s in sections if s.skipped]
    try:
        from rich.console import Console
        from rich.table import Table
        table = Table(*header)
        for line in lines:
            table.add_row(*line)
        Console(width=200).print(table)
    except ImportError:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
        for line in [header] + lines:
            print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))


def to_json(machine: dict, args, sections: list[Section]) -> dict:
    """The JSON written by ``--json``: the machine, the arguments, and each section's rows and details."""
    return {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
            "sections": {s.name: {"rows": [r.__dict__ for r in s.rows], "details": s.details,
                                  "skipped": s.skipped} for s in sections}}
