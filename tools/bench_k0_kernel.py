#!/usr/bin/env python
"""Training-step time with and without the k0 sigmoid + total-variation kernel (nex_core/model/sigmoid_tv.py),
paired in one process: two trainers of the same config on the same scene, stepped in alternating rounds, one
with the kernel and one with torch's operations (``NEX_NATIVE_KERNELS=0`` for it). The kernel's share grows
with the MPI's size: measure at the size you train at.

    python tools/bench_k0_kernel.py                 # the fast preset on synthetic 1008x756 views
    python tools/bench_k0_kernel.py --scene SCENE --rounds 5 --steps 4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def use_kernel(on: bool) -> None:
    from nex_core.model import cpu_kernels

    os.environ["NEX_NATIVE_KERNELS"] = "1" if on else "0"
    cpu_kernels.reset()  # the next call loads (from the cache) or declines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", type=Path, help="scene folder (default: synthetic 1008x756 views)")
    p.add_argument("--preset", default="fast")
    p.add_argument("--field", default="mlp", choices=("mlp", "grid", "auto"),
                   help="F_theta's form (default mlp, as the documented figures; auto: the preset's choice here)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per trainer and round (default 4)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        p.error("--rounds and --steps must be at least 1")
    if args.scene is not None and not args.scene.is_dir():
        p.error(f"--scene {args.scene}: no such folder")

    import torch

    from nex_core.io import config as config_mod
    from nex_core.model.sigmoid_tv import kernel_error, native_sigmoid_tv
    from nex_core.runtime.allocator import keep_freed_memory
    from nex_core.training.trainer import Trainer
    from tools.benchmark.machine import machine_info
    from tools.benchmark.setups import write_synthetic_scene

    keep_freed_memory()  # as nex train does
    if args.threads:
        torch.set_num_threads(args.threads)
    use_kernel(True)
    if native_sigmoid_tv() is None:
        print(f"no kernel here: {kernel_error()}")
        return 1
    with tempfile.TemporaryDirectory(prefix="nex_bench_k0_") as tmp:
        scene = args.scene or write_synthetic_scene(Path(tmp) / "scene", n_views=12)
        trainers = {}
        for on in (True, False):
            use_kernel(on)
            cfg = config_mod.preset(args.preset)
            cfg.data.scene, cfg.train.device, cfg.model.field = str(scene), "cpu", args.field
            trainers[on] = Trainer(cfg, Path(tmp) / f"run-{on}")
            for _ in range(2):  # warm-up
                trainers[on].train_step()
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for on in (True, False):
                use_kernel(on)
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    trainers[on].train_step()
                times[on].append((time.perf_counter() - t0) / args.steps)
        k0_shape = list(trainers[True].model.k0.shape)
    info = machine_info()
    kernel_s, torch_s = statistics.median(times[True]), statistics.median(times[False])
    print(f"{info['cpu']}, {torch.get_num_threads()} threads, k0 {k0_shape}")
    print(f"step with the kernel {kernel_s:.3f} s, with torch's operations {torch_s:.3f} s (medians of "
          f"{args.rounds} rounds of {args.steps}): {torch_s / kernel_s:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "k0_shape": k0_shape, "kernel_s": times[True],
                                         "torch_s": times[False], "ratio": torch_s / kernel_s}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
