"""The CPU kernel's build choices, measured: instruction-set targets, the reduction, and torch's operations.

Builds the leaky-ReLU-gradient kernel of ``nex_core.model.cpu_kernels`` for several ``-march`` targets (and,
with ``--old-source REV``, the source of an earlier commit, whose signature had no partial-sums buffer),
then times each on the same bf16 tensors, interleaved so machine load hits all alike, against torch's
``leaky_relu_backward`` plus a column sum. Also times one ``torch.utils.cpp_extension.load_inline`` build
(the maintained route) against one ``cc`` build of the kernel, with ``--inline``.

Usage (from the repository root)::

    .venv/bin/python tools/bench_cpu_kernel.py --rows 64032 --cols 128 --repeats 60
    .venv/bin/python tools/bench_cpu_kernel.py --old-source 533db57 --inline
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from nex_core.model import cpu_kernels
from nex_core.model.cpuinfo import first_processor_fields

TARGETS = {"native": ["-march=native"], "x86-64-v4": ["-march=x86-64-v4"], "x86-64-v3": ["-march=x86-64-v3"],
           "x86-64-v2": ["-march=x86-64-v2"], "compiler default": []}


def build(source: str, flags: list[str], folder: Path, name: str):
    src, lib = folder / f"{name}.c", folder / f"{name}.so"
    src.write_text(source)
    subprocess.run(["cc", "-O3", "-fopenmp", "-shared", "-fPIC", *flags, str(src), "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib)).nex_leaky_relu_grad_sums


def old_source(rev: str) -> str:
    text = subprocess.run(["git", "show", f"{rev}:nex_core/cpu_kernels.py"], capture_output=True, text=True,
                          check=True).stdout
    return text.split('_SOURCE = r"""', 1)[1].split('"""', 1)[0]


def time_inline_build(folder: Path) -> float:
    from torch.utils.cpp_extension import load_inline

    start = time.perf_counter()
    load_inline("nex_probe", cpp_sources="#include <torch/extension.h>\n"
                "torch::Tensor colsum(torch::Tensor x) { return x.sum(0); }\n",
                functions=["colsum"], build_directory=str(folder), extra_cflags=["-O3"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64032)
    parser.add_argument("--cols", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--old-source", metavar="REV", help="also time the kernel source of this commit")
    parser.add_argument("--inline", action="store_true", help="also time a load_inline build")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="nex_kernel_bench_"))
    variants = {f"fixed-order, {k}": (build(cpu_kernels._SOURCE, f, folder, f"new{i}"), True)
                for i, (k, f) in enumerate(TARGETS.items())}
    if args.old_source:
        variants["omp critical (old), native"] = (build(old_source(args.old_source), ["-march=native"], folder,
                                                        "old"), False)
    rows, cols = args.rows, args.cols
    g, h = torch.randn(rows, cols).bfloat16(), torch.randn(rows, cols).bfloat16()
    out, sums = torch.empty_like(g), torch.empty(cols)
    part = torch.empty(-(-rows // cpu_kernels.BLOCK_ROWS), cols)
    ptr = lambda t: ctypes.c_void_p(t.data_ptr())  # noqa: E731
    times: dict[str, list[float]] = {k: [] for k in [*variants, "torch ops"]}
    for _ in range(args.repeats):
        for name, (fn, new) in variants.items():
            start = time.perf_counter()
            buffers = [ptr(g), ptr(h), ptr(out), *([ptr(part)] if new else []), ptr(sums)]
            fn(*buffers, ctypes.c_int64(rows), ctypes.c_int64(cols), ctypes.c_float(0.01))
            times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        torch.ops.aten.leaky_relu_backward(g, h, 0.01, True).float().sum(0)
        times["torch ops"].append(time.perf_counter() - start)
    fields = first_processor_fields()
    print(f"CPU: {fields.get('model name', '?')}; [{rows} x {cols}] bf16, {args.threads} threads, "
          f"median of {args.repeats}")
    ref = statistics.median(times["torch ops"])
    result = {"cpu": fields.get("model name", "?"), "rows": rows, "cols": cols, "threads": args.threads,
              "ms": {}, "ratio_to_torch": {}}
    for name, samples in times.items():
        med = statistics.median(samples)
        result["ms"][name] = [1e3 * x for x in samples]
        result["ratio_to_torch"][name] = med / ref
        print(f"  {name:32s} {med * 1e3:8.3f} ms   {med / ref:6.3f} x torch's time")
    if args.inline:
        start = time.perf_counter()
        build(cpu_kernels._SOURCE, cpu_kernels.build_flags()[len(cpu_kernels.BASE_FLAGS):], folder, "timed")
        cc_s = time.perf_counter() - start
        inline_s = time_inline_build(folder / "inline")
        result.update(cc_build_s=cc_s, load_inline_build_s=inline_s)
        print(f"  build: cc {cc_s:.2f} s, load_inline of a one-line op {inline_s:.1f} s ({inline_s / cc_s:.0f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
