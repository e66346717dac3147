"""``tools/bench_quality.py``'s tables (markdown): held-out PSNR / SSIM per scene and the mean, one
column per setting and budget, one table per capture; phone captures also get the colour-fitted score."""

from __future__ import annotations

import re
from pathlib import Path

START, END = "<!-- bench_quality:start -->", "<!-- bench_quality:end -->"


def _columns(results: list[dict]) -> list[tuple[str, float]]:
    seen: dict[tuple[str, float], None] = {}
    for r in results:
        seen.setdefault((r["label"], r["minutes"]), None)
    return list(seen)


def capture_table(results: list[dict], capture: str, metric: str = "psnr") -> str:
    """One markdown table: rows are the scenes of ``capture``, columns the (setting, minutes) pairs;
    each cell ``PSNR / SSIM`` (``metric`` = psnr) or the colour-fitted PSNR (``psnr_colour_fit``); the
    last row is each column's mean over the scenes that have it (their number where it is not all)."""
    rows = [r for r in results if r["capture"] == capture]
    if not rows:
        return ""
    columns = _columns(rows)
    scenes = list(dict.fromkeys(r["scene"] for r in rows))
    cell = {(r["scene"], r["label"], r["minutes"]): r for r in rows}
    head = "| scene | " + " | ".join(f"{label}, {minutes:g} min" for label, minutes in columns) + " |"
    lines = [head, "|---|" + "---|" * len(columns)]

    def fmt(r: dict | None) -> str:
        if r is None or r.get(metric) is None:
            return "-"
        return f"{r['psnr']:.2f} / {r['ssim']:.3f}" if metric == "psnr" else f"{r[metric]:.2f}"

    for scene in scenes:
        lines.append(f"| {scene} | " + " | ".join(fmt(cell.get((scene, *c))) for c in columns) + " |")
    # The mean of each column over the scenes that have it; where that is not every scene, it says how many.
    means = []
    for c in columns:
        vals = [cell[(s, *c)] for s in scenes if cell.get((s, *c), {}).get(metric) is not None]
        if not vals:
            means.append("-")
            continue
        text = (f"**{sum(v['psnr'] for v in vals) / len(vals):.2f}** / {sum(v['ssim'] for v in vals) / len(vals):.3f}"
                if metric == "psnr" else f"**{sum(v[metric] for v in vals) / len(vals):.2f}**")
        means.append(text + ("" if len(vals) == len(scenes) else f" ({len(vals)} scenes)"))
    if len(scenes) > 1:
        lines.append(f"| mean ({len(scenes)} scenes) | " + " | ".join(means) + " |")
    return "\n".join(lines)


def steps_table(results: list[dict]) -> str:
    """How many steps each budget bought (the mean over scenes), per setting: the speed side of the table."""
    columns = _columns(results)
    lines = ["| setting | " + " | ".join(f"{m:g} min" for m in sorted({m for _, m in columns})) + " |",
             "|---|" + "---|" * len({m for _, m in columns})]
    for label in dict.fromkeys(label for label, _ in columns):
        cells = []
        for minutes in sorted({m for _, m in columns}):
            steps = [r["steps"] for r in results if r["label"] == label and r["minutes"] == minutes and r.get("steps") is not None]
            cells.append(f"{sum(steps) / len(steps):.0f}" if steps else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def code_line(results: list[dict], code: str) -> str:
    """Which nex_core each cell was trained with: the current code, and any earlier one reused for it."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.get("code", "unknown")] = counts.get(r.get("code", "unknown"), 0) + 1
    parts = [f"{c} ({n} cells{', the current code' if c == code else ', reused with --reuse-code'})"
             for c, n in counts.items()]
    return "nex_core sources (sha256, 10 digits): " + ("; ".join(parts) if parts else code) + "."


def report(results: list[dict], machine: dict, command: str, montages: list[Path], docs: Path,
           code: str = "") -> str:
    """The whole markdown section: command, machine, code, the tables and the montages."""
    loads = [r["load_before"] for r in results if r.get("load_before") is not None]
    parts = [f"Command: `{command}`", "",
             f"Machine: {machine.get('cpu')}, {machine.get('cpu_count')} cores, torch {machine.get('torch')}; "
             "the 1-minute load average before each cell "
             + (f"{min(loads):.2f}-{max(loads):.2f}" if loads else "unknown")
             + " (the benchmark itself, two threads, keeps it near 2; per cell in the JSON).", "",
             code_line(results, code), ""]
    for capture in ("clean", "phone"):
        table = capture_table(results, capture)
        if not table:
            continue
        what = ("clean captures (the renders' exact poses, identical exposure, no lens)" if capture == "clean" else
                "phone-like captures (`nex prepare` poses and undistortion; exposure / white-balance drift, noise, "
                "JPEG)")
        parts += [f"Held-out PSNR / SSIM (identity colour), {what}:", "", table, ""]
        if capture == "phone":
            parts += ["The same runs scored after fitting each held-out view's colour (3x3 + bias) on one half "
                      "of the image and scoring the other half, as appearance-compensated methods report:", "",
                      capture_table(results, capture, "psnr_colour_fit"), ""]
    parts += ["Training steps each budget bought (mean over the scenes):", "", steps_table(results), ""]
    for path in montages:
        rel = path.relative_to(docs) if path.is_relative_to(docs) else path
        parts.append(f"![{path.stem}]({rel.as_posix()})")
    return "\n".join(parts).rstrip() + "\n"


def write_section(doc: Path, heading: str, body: str) -> None:
    """Put ``heading`` + ``body`` between the bench_quality markers of ``doc`` (appended if absent)."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n"
    section = f"{START}\n{heading}\n\n{body}{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text, encoding="utf-8")
