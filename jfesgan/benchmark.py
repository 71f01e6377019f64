"""Speed and memory of the train steps (and, with --layers, of each convolution implementation).

  python -m jfesgan.benchmark --config configs/joint.py [--steps 20] [--loop 10] [--layers]

Times are medians over ``--steps`` calls after a warm-up (compile excluded, reported apart), with
the real step functions, shapes and sharding of the config: each stage's step one per call
(``step_s``) and ``--loop`` steps per call as the fused loop runs them (``loop_step_s``, per step:
``lax.scan`` over a device-resident dataset, ``config.steps_per_call``).  Memory is the process's peak resident
set on CPU and the device allocator's peak on GPU/TPU.
"""

from __future__ import annotations

import json
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jfesgan import parallel, stages
from jfesgan.data import pipeline
from jfesgan.data.pipeline import ArrayDataset
from jfesgan.models import build_models, layers

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/joint.py", "Configuration file.")
flags.DEFINE_integer("steps", 20, "Timed calls per step function.")
flags.DEFINE_integer("loop", 0, "Steps per call of the fused loop (0: not timed). On CPU the loop "
                     "is unrolled, so its compile time grows with this number.")
flags.DEFINE_bool("layers", False, "Also time each convolution implementation on the model's shapes.")


def _time(fn, args_fn, n: int) -> tuple[float, float]:
  """(compile + first call seconds, median seconds per later call); args_fn() gives fresh args."""
  t = time.perf_counter()
  out = fn(*args_fn())
  jax.block_until_ready(out)
  first = time.perf_counter() - t
  times = []
  for _ in range(n):
    args = args_fn()
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return first, statistics.median(times)


def _peak_memory_mb() -> float:
  stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_benchmarks(config, n: int, loop_steps: int = 0) -> dict:
  """Per-step time of each stage's train step at the config's shapes."""
  k, subjects = 7, 100
  models = build_models(config, k, subjects)
  mesh = parallel.make_mesh()
  b, r, c = config.batch_size, config.data.image_size, config.data.channels
  rng = np.random.default_rng(0)
  batch = parallel.shard_batch({
      "image": rng.uniform(-1, 1, (b, r, r, c)).astype(np.float32),
      "label": rng.integers(0, k, b).astype(np.int32),
      "subject": rng.integers(0, subjects, b).astype(np.int32)}, mesh)
  key = jax.random.key(0)
  results = {}
  # The stages' own factories and steps, on a stand-in dataset of random images.
  data = ArrayDataset(rng.integers(0, 256, (4 * b, r, r, c)).astype(np.uint8),
                      rng.integers(0, k, 4 * b).astype(np.int32),
                      rng.integers(0, subjects, 4 * b).astype(np.int32), tuple(map(str, range(k))))
  ctx = stages.Context(config=config, models=models, train=data)
  batches = pipeline.Batches(data, b, seed=0, hflip=True)
  arrays = parallel.replicate(batches.arrays(), mesh)
  finished = {}
  for stage in stages.PLAN:
    finished[stage.name] = parallel.replicate(stage.create(ctx, finished), mesh)
    static = stage.static(config, 0) if stage.static else {}
    jitted = parallel.jit_step(stage.step(ctx), mesh, static_argnames=stage.static_argnames)
    # A copy: the timed steps donate their state, and the next stages start from `finished`.
    holder = {"state": jax.tree.map(jnp.array, finished[stage.name])}

    def call(s, bt, kk, jitted=jitted, static=static, holder=holder):
      holder["state"], m = jitted(s, bt, kk, **static)
      return m

    first, per = _time(call, lambda holder=holder: (holder["state"], batch, key), n)
    results[stage.name] = {"compile_plus_first_s": round(first, 2), "step_s": round(per, 4),
                           "images_per_s": round(b / per, 1)}
    if loop_steps > 1:
      loop = parallel.jit_loop(stage.step(ctx), pipeline.gather_batch, mesh,
                               static_argnames=stage.static_argnames)
      rows = parallel.shard_batch(
          {"index": np.stack([batches.indices(i) for i in range(loop_steps)], 1),
           "flip": np.stack([batches.flips(i) for i in range(loop_steps)], 1)}, mesh)
      plan = np.arange(loop_steps, dtype=np.int32)

      def call_loop(s, loop=loop, static=static, holder=holder):
        holder["state"], m = loop(s, arrays, rows["index"], rows["flip"], plan, key, **static)
        return m

      first, per = _time(call_loop, lambda holder=holder: (holder["state"],), max(2, n // 4))
      results[stage.name].update(loop_compile_plus_first_s=round(first, 2),
                                 loop_step_s=round(per / loop_steps, 4))
  return results


def layer_benchmarks(config, n: int) -> list[dict]:
  """fwd+bwd (and, for the critic's strided convs, second-order) time of every implementation."""
  b = 3 * config.batch_size
  r, w = config.data.image_size, config.model.width
  rows = []
  key = jax.random.key(0)
  size, cin = r, config.data.channels
  for i in range(config.model.num_down):
    cout = min(w * 2**i, config.model.max_width)
    x = jax.random.normal(key, (b, size, size, cin))
    k4 = jax.random.normal(key, (4, 4, cin, cout)) * 0.05
    y = jax.random.normal(key, (b, size // 2, size // 2, cout))
    kt = jax.random.normal(key, (4, 4, cout, cin)) * 0.05
    for impl in layers.IMPLS:
      down = jax.jit(jax.grad(lambda x, k: jnp.sum(layers.conv2d(x, k, 2, impl)**2), argnums=(0, 1)))
      up = jax.jit(jax.grad(lambda y, k: jnp.sum(layers.conv_transpose2x(y, k, impl)**2), argnums=(0, 1)))
      second = jax.jit(jax.grad(lambda k: jnp.sum(jax.grad(
          lambda x: jnp.sum(jnp.tanh(layers.conv2d(x, k, 2, impl))))(x)**2)))
      rows.append({"shape": f"{b}x{size}x{size}x{cin}->{cout}", "impl": impl,
                   "conv_s2_fwd_bwd_ms": round(_time(down, lambda: (x, k4), n)[1] * 1e3, 2),
                   "conv_s2_second_order_ms": round(_time(second, lambda: (k4,), n)[1] * 1e3, 2),
                   "convT_fwd_bwd_ms": round(_time(up, lambda: (y, kt), n)[1] * 1e3, 2)})
    size, cin = size // 2, cout
  return rows


def main(argv):
  del argv
  config = FLAGS.config
  report = {"backend": jax.default_backend(), "devices": jax.device_count(),
            "device_kind": jax.devices()[0].device_kind, "batch_size": config.batch_size,
            "image_size": config.data.image_size, "width": config.model.width,
            "conv_impl": config.model.conv_impl,
            "steps": step_benchmarks(config, FLAGS.steps, FLAGS.loop)}
  if FLAGS.layers:
    report["layers"] = layer_benchmarks(config, max(3, FLAGS.steps // 4))
  report["peak_memory_mb"] = round(_peak_memory_mb(), 1)
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  app.run(main)
