# Sourced by the launch/gpu_*.sh scripts: an accelerator machine's Python set up for jfesgan.
# Where the machine cannot install packages, Python wheels in .whl/ (on the H200 image used for
# results/benchmark/gpu_h200.md: ml_collections, tensorboardX, tensorflow-datasets and its needs
# array_record, dm-tree, immutabledict, importlib_resources, promise, simple_parsing,
# docstring_parser, tensorflow-metadata, googleapis-common-protos, termcolor, toml) are installed
# into /tmp/site first.  Writes the machine and package versions to "$OUT/env.txt".
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
mkdir -p "$OUT"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PWD"
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 \
    || echo "no nvidia-smi"
  python3 -c "import jax, flax, optax; print('jax', jax.__version__, jax.devices(), \
'flax', flax.__version__, 'optax', optax.__version__)"
  python3 -c "import torch; print('torch', torch.__version__)" 2>/dev/null || echo "no torch"
} 2>&1 | tee "$OUT/env.txt"
