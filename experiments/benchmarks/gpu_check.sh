#!/usr/bin/env bash
# The GPU check on a lent GPU machine (experiments/benchmarks/README.md, "GPU check").
# From the repository root there, with the wheels of gpu_wheels.txt in .whl/:
#   bash experiments/benchmarks/gpu_check.sh [gpu_check flags]
# It installs the wheels into /tmp/site, prints the GPU and the versions it runs with, and
# runs gpu_check with its output in $OUT (default gpu_check_out): results.json,
# results.md and this run's log, log.txt. The exit status is gpu_check's.
set -uo pipefail
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
  nvidia-smi || true
  python3 -m pip list 2>/dev/null |
    grep -i -E '^(jax|jaxlib|jax-cuda|flax|optax|chex|orbax|numpy|torch|triton|cupy)' || true
  # gpu_check stops starting cases after --budget_s (420 s); this is the backstop.
  timeout 540 python3 -m experiments.benchmarks.gpu_check --out="$out" "$@"
} 2>&1 | tee "$out/log.txt"
