#!/usr/bin/env bash
# A cross-validation (by default the CK+48 ablation: six rows + the real_intra control x 10 folds) on one accelerator, as
# one prepared script, the database and the judge carried beside the checkout:
#   DATA=.data/CK+48 JUDGE=.data/judge_fer2013 OUT=results_dir \
#     bash launch/gpu_crossval.sh [configs/ck48.py] [more `jfesgan crossval` flags, e.g. --folds 0,1]
# The fused loop runs K steps per jitted call (K=10 by default; the same batches and updates as
# step by step), compiled steps are kept in a persistent cache shared by the folds, and the run
# stops after CV_S seconds (default 540) with what it finished written: ablation.json and
# ablation.md in $OUT cover every finished fold and row.  WORKDIR (default /tmp/jfesgan_cv) keeps
# the folds; re-running the script on the same machine resumes there.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_crossval}"
source launch/device_env.sh
config="${1:-configs/ck48.py}"
shift || true
if [ -n "${DATA:-}" ]; then
  [ -d "$DATA" ] || { echo "DATA=$DATA: no such folder" >&2; exit 2; }
  config="$config:$DATA"
fi
judge=()
if [ -n "${JUDGE:-}" ]; then
  [ -d "$JUDGE" ] || { echo "JUDGE=$JUDGE: no such folder" >&2; exit 2; }
  judge=(--config.eval.judge="$JUDGE")
fi
# The same command twice: once to train (within CV_S seconds), once for the tables.
cv=(python3 -m jfesgan.research.crossval --config "$config" --ablation
    --config.data.data_dir="${TFDS_DIR:-/tmp/jfesgan_tfds}" --config.steps_per_call="${K:-10}"
    "${judge[@]}" --workdir "${WORKDIR:-/tmp/jfesgan_cv}" --compilation_cache=/tmp/jfesgan_xla)
t0=$SECONDS
timeout "${CV_S:-540}" "${cv[@]}" "$@" > "$OUT/crossval.log" 2>&1
status=$?
echo "crossval: exit $status after $((SECONDS - t0)) s"
# The table of what finished (the run itself writes it only when all its folds are done).
timeout 300 "${cv[@]}" --table_only --out "$OUT" "$@" >> "$OUT/crossval.log" 2>&1 \
  && cat "$OUT"/ablation.md || tail -30 "$OUT/crossval.log"
exit $status
