#!/usr/bin/env bash
# The accelerator check of the speed work, as one script for a single GPU:
#   OUT=results_dir bash launch/gpu_check.sh
# 1. python -m jfesgan.benchmark at 128x128x3, batch 16, stages 1 and 2 (fesgan, joint), jfesgan
#    beside the same steps in PyTorch on the same GPU (eager; TF32 allowed in both), step by step
#    and as the fused loop (10 steps per call): float32, then bfloat16 (jfesgan's model.dtype,
#    PyTorch's autocast); images/s, FLOPs per step and MFU against the chip's dense peak.
#    Then bfloat16 at batch 128 (how far a larger batch fills the chip).
# 2. The main job with the fused loop in bfloat16, then float32 (stability: both summary.json).
# Each part has its own time limit, so a failure or a slow compile in one leaves the others.
# Where the machine cannot install packages, Python wheels in .whl/ (on the H200 image used for
# results/benchmark/gpu_h200.md: ml_collections, tensorboardX, tensorflow-datasets and its needs
# array_record, dm-tree, immutabledict, importlib_resources, promise, simple_parsing,
# docstring_parser, tensorflow-metadata, googleapis-common-protos, termcolor, toml) are installed
# into /tmp/site first.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PWD"
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, jax.devices(), \
'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__)"
} 2>&1 | tee "$OUT/env.txt"

bench() {  # NAME SECONDS extra flags...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" python3 -m jfesgan.benchmark --config configs/joint.py --torch \
    --shapes 128x3 --only fesgan,joint --steps 20 --loop 10 --nomemory \
    --json "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - t0)) s"
  grep -E "^\|" "$OUT/$name.log" || tail -20 "$OUT/$name.log"
}
bench gpu_float32 "${BENCH_S:-190}"
bench gpu_bfloat16 "${BENCH_S:-190}" --config.model.dtype=bfloat16
bench gpu_bfloat16_b128 "${BENCH_S:-190}" --config.model.dtype=bfloat16 --config.batch_size=128

for dtype in bfloat16 float32; do
  t0=$SECONDS
  timeout "${MAIN_S:-200}" python3 -m jfesgan.main --config configs/joint.py \
    --config.model.dtype=$dtype --config.steps_per_call=10 --workdir /tmp/jfesgan_main_$dtype \
    --compilation_cache=/tmp/jfesgan_xla > "$OUT/main_$dtype.log" 2>&1
  echo "main job ($dtype): exit $? after $((SECONDS - t0)) s"
  cp /tmp/jfesgan_main_$dtype/summary.json "$OUT/main_${dtype}_summary.json" 2>/dev/null \
    && grep -E "eval/|wall time" "$OUT/main_$dtype.log" || tail -30 "$OUT/main_$dtype.log"
done
