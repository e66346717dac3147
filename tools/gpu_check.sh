#!/usr/bin/env bash
# The GPU check of the CUDA path, in at most about 8 minutes on one GPU: the CUDA tests, the benchmark's
# cuda section (bench-s, paper shape, render, bake on the GPU, with the reference-style baseline for the
# ratio), a short `fast` training of the shipped scene with its held-out PSNR and bake time, and the NCCL
# path under torchrun with one process. Everything lands in OUT (default gpu-check/): JSON, logs, summary.
#
#   tools/gpu_check.sh [OUT]          # from the repository root, with .venv set up (pip install -e ".[test]")
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu-check}}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: > "$summary"
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, and note the outcome and time
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    printf '%-12s rc=%-3s %4ss  (%s)\n' "$name" "$rc" "$((SECONDS - start))" "$OUT/$name.log" | tee -a "$summary"
}

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi not found" > "$OUT/nvidia-smi.txt"
"$PY" - > "$OUT/torch.json" <<'PYEOF'
import json, torch
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                bf16=torch.cuda.is_bf16_supported(), devices=torch.cuda.device_count())
print(json.dumps(info, indent=1))
PYEOF
cat "$OUT/torch.json" | tee -a "$summary"

step cuda-tests 150 "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider
step bench-cuda 240 "$PY" tools/bench.py --only cuda --quick --json "$OUT/bench-cuda.json"
step train-fast 120 "$PY" -m nex_core.cli train data/scenes/shiny_demo --preset fast --device cuda \
    --out "$OUT/run-fast" --quiet
step bake-fast 45 "$PY" -m nex_core.cli bake "$OUT/run-fast" --device cuda
step torchrun-1 60 "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 -m nex_core.cli train \
    data/scenes/shiny_demo --preset tiny --steps 60 --device cuda --out "$OUT/run-ddp" --quiet
for run in run-fast run-ddp; do
    if [ -f "$OUT/$run/eval/metrics.json" ]; then
        "$PY" -c "import json,sys; m=json.load(open(sys.argv[1]))['mean']; print(sys.argv[2], 'held-out PSNR', m['psnr'], 'SSIM', m['ssim'])" \
            "$OUT/$run/eval/metrics.json" "$run" | tee -a "$summary"
    fi
done
echo "done: $summary"
