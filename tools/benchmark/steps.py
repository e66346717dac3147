"""Training variants stepped in turn, so that machine load hits them alike, and the rows of their step times."""

from __future__ import annotations

from typing import Any

import torch

from .measure import timed_cpu
from .results import Section


def interleaved_steps(runs: dict[str, Any], steps: int, warmup: int, device: torch.device,
                      cpu_times: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Step every run in turn (rotating the order each round); wall seconds per step after ``warmup``
    (and CPU seconds into ``cpu_times`` when given)."""
    names = list(runs)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(steps):
        order = names[i % len(names):] + names[: i % len(names)]
        for k in order:
            wall, cpu = timed_cpu(runs[k].train_step, device)
            if i >= warmup:
                times[k].append(wall)
                if cpu_times is not None:
                    cpu_times.setdefault(k, []).append(cpu)
    return times


def add_step_rows(sec: Section, times: dict[str, list[float]], rays: int,
                  cpu_times: dict[str, list[float]] | None = None, base: str = "baseline") -> None:
    """Rows: wall s / step, rays / s, CPU s / step, and ratios to ``base`` paired round by round."""
    for k, ts in times.items():
        sec.add(k, "s / step", ts, "s", "wall clock")
        sec.add(k, "rays / s", [rays / t for t in ts], "rays/s", "wall clock")
        if cpu_times and k in cpu_times:
            sec.add(k, "CPU s / step", cpu_times[k], "s", "process CPU time (not waiting for a core)")
    for label, table in (("wall", times), ("CPU", cpu_times or {})):
        for k, ts in table.items():
            if k != base and table.get(base):
                paired = [a / b for a, b in zip(ts, table[base])]
                sec.add(f"{k} / {base}", f"step time ratio ({label})", paired, "x", "paired per round")


def set_rays(runs: dict[str, Any], rays: int) -> None:
    """Set every run's rays per step."""
    for run in runs.values():
        run.cfg.train.rays = rays
