"""Benchmarks of nex_core against a straightforward implementation of the same algorithm
(``nex_core/training/reference_trainer.py``): training-step time, quality per step and per wall-clock
minute, full-image render time and memory, bake time and memory.

    .venv/bin/python tools/bench.py [--quick] [--json out.json] [--only NAME ...] [--threads N]

Sections (``--only``): ``bench-s`` (the 160x120 scene, 8x4 planes, MLP 4x128, 2001 rays: ours fp32,
ours bf16 autocast with F_theta fused and under plain autograd, the grid field and the baseline, interleaved
step by step, then held-out PSNR after the same steps),
``paper`` (1008x756, 16x12 planes, MLP 4x384, synthetic images), ``fast`` (held-out PSNR against wall
clock: the ``fast`` preset with nex_core's Trainer vs the baseline with the reference's settings),
``render`` (``render_image`` of a random-weight paper model at 1008x756 x 192 planes), ``bake``
(``bake_run`` of a trained fast run; a paper-shape estimate), ``profile`` (torch.profiler of one bench-s
step of ours), ``cuda`` (the timing sections on CUDA with synchronised timing, when there is a GPU).

Every timing is reported as min / median / max over its repeats; on the CPU the process CPU time is
reported beside the wall clock (steadier on a shared machine). Memory is measured in a separate process
per measurement (its peak resident size, VmHWM, minus its resident size just before the measured call),
so peaks do not mask each other. Machine information and the load average at start and end go into the JSON.

This file is the harness (flags, the order of the sections, the table and the JSON); each section is a
module of ``tools/benchmark/sections/``, and what they share lives beside them in ``tools/benchmark/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchmark.machine import load_average, machine_info
from benchmark.results import Section, print_table, to_json
from benchmark.sections.bake import section_bake
from benchmark.sections.bench_s import section_bench_s
from benchmark.sections.cuda import section_cuda
from benchmark.sections.fast import section_fast
from benchmark.sections.paper import section_paper
from benchmark.sections.profile import section_profile
from benchmark.sections.render import section_render
from benchmark.setups import DEMO
from benchmark.workers import RESULT_TAG, WORKERS

from nex_core.runtime.allocator import keep_freed_memory

SECTIONS = ("bench-s", "paper", "fast", "render", "bake", "profile", "cuda")


def run_section(name: str, args, tmp: Path) -> Section:
    """Run one section on the CPU (``cuda``: on the GPU); a failure becomes a skipped section."""
    cpu = torch.device("cpu")
    table = {"bench-s": section_bench_s, "paper": section_paper, "fast": section_fast,
             "render": section_render, "bake": section_bake, "profile": section_profile}
    t0 = time.perf_counter()
    try:
        sec = section_cuda(args, tmp) if name == "cuda" else table[name](args, cpu, tmp)
    except Exception as exc:  # a failed section is reported, the others still run
        sec = Section(name, skipped=f"failed: {type(exc).__name__}: {exc}")
    sec.details["section_seconds"] = time.perf_counter() - t0
    sec.details["load_average_after"] = load_average()
    return sec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--worker KIND SPEC`` is how a worker process is started)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a 2-3 minute run with fewer steps and repeats")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--allocator", choices=("tuned", "default"), default="tuned",
                   help="tuned: keep freed memory for reuse, as nex train does (default); default: glibc's")
    p.add_argument("--steps", type=int, default=0, help="bench-s steps (default 300; --quick 12)")
    p.add_argument("--minutes", type=float, help="fast-section training budget per variant (default 5; --quick 0.5)")
    p.add_argument("--eval-every", type=int, default=100, help="fast section: steps between held-out PSNRs")
    p.add_argument("--paper-rays", type=int, default=0, help="paper-shape rays (CPU 1002, --quick 501; CUDA 8001; capped to fit memory)")
    p.add_argument("--render-rows", type=int, default=0, help="rows of the 1008x756 render to time (CPU 8, --quick 2; CUDA all)")
    p.add_argument("--scene", type=Path, default=DEMO, help="the scene of bench-s and fast")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, print the table and write the JSON; or, with ``--worker``, one measurement."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(RESULT_TAG + json.dumps(WORKERS[args.worker](json.loads(args.spec))), flush=True)
        return 0
    machine = machine_info()
    # What `nex train` does (nex_core.runtime.allocator); it applies to ours and the baseline alike.
    machine["allocator"] = "glibc default" if args.allocator == "default" else (
        "freed memory kept" if keep_freed_memory() else "glibc default (mallopt unavailable)")
    machine["load_average_start"] = load_average()
    names = args.only or [s for s in SECTIONS if not (args.quick and s == "profile")]
    # bake reuses the fast section's run when both run: keep that order.
    names = sorted(names, key=SECTIONS.index)
    sections = []
    with tempfile.TemporaryDirectory(prefix="nex-bench-") as tmp:
        for name in names:
            print(f"[bench] {name} ... (load {load_average()})", flush=True)
            sections.append(run_section(name, args, Path(tmp)))
    machine["load_average_end"] = load_average()
    machine["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"{machine['cpu']}, {machine['cpu_count']} CPUs, torch {machine['torch']} "
          f"({torch.get_num_threads()} threads, allocator: {machine['allocator']}); "
          f"load average {machine['load_average_start']} -> {machine['load_average_end']}")
    print_table(sections)
    if args.json:
        args.json.write_text(json.dumps(to_json(machine, args, sections), indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
