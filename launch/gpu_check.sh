#!/usr/bin/env bash
# The accelerator check of the speed work, as one script for a single GPU:
#   OUT=results_dir bash launch/gpu_check.sh
# 1. jfesgan benchmark at 128x128x3, batch 16, stages 1 and 2 (fesgan, joint), jfesgan
#    beside the same steps in PyTorch on the same GPU (eager; TF32 allowed in both), step by step
#    and as the fused loop (10 steps per call): float32, then bfloat16 (jfesgan's model.dtype,
#    PyTorch's autocast); images/s, FLOPs per step and MFU against the chip's dense peak.
#    Then bfloat16 at batch 128 (how far a larger batch fills the chip).
# 2. The main job with the fused loop in bfloat16, then float32 (stability: both summary.json).
# Each part has its own time limit, so a failure or a slow compile in one leaves the others.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check}"
source launch/device_env.sh

bench() {  # NAME SECONDS extra flags...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" python3 -m jfesgan.bench.benchmark --config configs/joint.py --torch \
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
