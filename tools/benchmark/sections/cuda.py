"""cuda: the timing sections on CUDA (synchronised timing), when there is a GPU."""

from __future__ import annotations

from pathlib import Path

import torch

from ..results import Section
from .bake import section_bake
from .bench_s import section_bench_s
from .paper import section_paper
from .render import section_render


def section_cuda(args, tmp: Path) -> Section:
    """bench-s, paper, render and bake on the GPU, as one section; skipped without CUDA."""
    if not torch.cuda.is_available():
        return Section("cuda", skipped="no CUDA (torch.cuda.is_available() is False)")
    device = torch.device("cuda")
    sec = Section("cuda")
    for fn in (section_bench_s, section_paper, section_render, section_bake):
        sub = fn(args, device, tmp)
        sec.rows += sub.rows
        sec.details[sub.name] = sub.details
    return sec
