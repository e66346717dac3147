"""paper: training steps at the paper's shape (1008x756, 16x12 planes, MLP 4x384) on synthetic images."""

from __future__ import annotations

import copy
import statistics
from pathlib import Path

import torch

from nex_core.training.reference_trainer import BaselineTrainer
from nex_core.training.trainer import Trainer

from ..measure import maxrss_bytes, release_memory
from ..results import Section
from ..setups import paper_config, paper_rays_that_fit, with_grid, write_synthetic_scene
from ..steps import add_step_rows, interleaved_steps, set_rays


def section_paper(args, device: torch.device, tmp: Path) -> Section:
    """Paper shape. Each variant, interleaved: one untimed step (Adam's state and the activations' memory
    are allocated), steps at ``rays``, then (full run) steps at 3 rays: the cost that does not grow with
    rays (k0's sigmoid, TV, their gradients, Adam over 79M k0 values); 8001 rays estimated as
    fixed + (t - fixed) * 8001 / rays."""
    sec = Section("paper" if device.type == "cpu" else "paper-cuda")
    cpu = device.type == "cpu"
    requested = args.paper_rays or (501 if args.quick and cpu else 1002 if cpu else 8001)
    rays = paper_rays_that_fit(requested, device)
    scene = write_synthetic_scene(tmp / f"paper-scene-{device.type}")
    cfg = paper_config(scene, str(device), rays)
    ours = Trainer(cfg, tmp / f"paper-ours-{device.type}")
    runs = {"ours": ours, "ours-grid": Trainer(with_grid(cfg), tmp / f"paper-grid-{device.type}"),
            "baseline": BaselineTrainer(copy.deepcopy(cfg), scene=ours.scene, device=device)}
    interleaved_steps(runs, 1, 1, device)  # untimed: allocates Adam's state and the activations' memory
    steps = 1 if args.quick else 3
    cpu: dict[str, list[float]] = {}
    times = interleaved_steps(runs, steps, 0, device, cpu if device.type == "cpu" else None)
    set_rays(runs, 3)
    fixed = {} if args.quick else interleaved_steps(runs, 2, 0, device)
    add_step_rows(sec, times, rays, cpu)
    for k, ts in fixed.items():
        sec.add(k, "s / step at 3 rays (fixed cost)", ts, "s")
    for k, ts in times.items() if fixed else ():
        a = statistics.median(fixed[k])
        sec.add(k, "s / step at 8001 rays (est.)", [a + (t - a) * 8001 / rays for t in ts], "s",
                f"from {rays} rays and the fixed cost" if rays < 8001 else "")
    g = ours.geom
    sec.details = {"rays": rays, "requested_rays": requested, "steps": steps, "times": times, "fixed": fixed,
                   "cpu_times": cpu,
                   "mpi": f"{g.mpi_width}x{g.mpi_height}x{g.n_planes}",
                   "activation_estimate_gib_at_8001": 8001 * 192 * 384 * 4 * 14 / 2 ** 30,
                   "process_peak_rss_mb": maxrss_bytes() / 2 ** 20}
    del runs, ours
    release_memory()
    return sec
