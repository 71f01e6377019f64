"""Speed and memory of the train steps, side by side with the same steps in PyTorch.

  jfesgan benchmark --config configs/joint.py [--torch] [--torch_variants eager,tuned,compiled]
      [--json FILE] [--shapes 48x1,128x3] [--steps 10] [--threads N] [--loop K] [--layers] [--trunk_layers]
      [--only fesgan,joint]

For every shape (``--shapes``: ``SIZExCHANNELS`` pairs, or ``config`` for the config's own), every
stage's train step with the config's networks, losses, batch and sharding, plus stage 1's
discriminator and generator updates alone (``fesgan_d``, ``fesgan_g``): the first call (compile,
reported apart) and the median seconds of ``--steps`` calls, each after an idle pause.

With ``--torch`` the same steps of :mod:`jfesgan.bench.torch_reference` are the yardstick.  The
PyTorch networks, loaded with jfesgan's initial parameters, are first checked to compute the same
outputs (and to have the same parameter counts).  Then each step is timed *as training runs
it*, in a fresh process per framework and per PyTorch variant (``--torch_variants``: eager,
tuned = fused Adam + channels-last, compiled = tuned + ``torch.compile``), with the same thread
count (``--threads``, default the CPUs the process may use, which is XLA:CPU's own choice):
3 warm-up steps, then rounds of ``--steps`` back-to-back steps with one wait at the end of each
(:func:`jfesgan.bench.timing.as_training_runs`), both sides computing the same metrics.  Each row
gets ``ratio`` = jfesgan seconds / the fastest PyTorch variant's (below 1: jfesgan is faster) and
``ratio_eager``.

On a GPU the PyTorch steps run on the GPU too (CUDA, synchronised at the end of each round;
TF32 matmuls allowed in PyTorch as XLA's default precision allows them in jfesgan).  On either
device they run under ``torch.autocast(bfloat16)`` when the config's ``model.dtype`` is
``bfloat16`` (on a CPU with AVX-512 BF16 or AMX, oneDNN's bf16 kernels).  Every row
reports images per second, the step's FLOPs (XLA's cost analysis of the lowered step, the same
count for both frameworks since they compute the same function) and, where the device's dense
peak is known (``PEAK_TFLOPS``, or ``--peak_tflops``), the model FLOPs utilisation (MFU).

Peak memory (``--memory``, on by default): each (framework, step) runs in a fresh process of its
own (the PyTorch one never imports JAX), which reports its resident set before the first step,
the peak of the first call (compilation included) and, on CPU, the peak of three later steps
after resetting the high-water mark (what the step itself holds); on GPU/TPU the device
allocator's peak.  ``mem_ratio`` compares the whole processes' peaks, ``step_mem_ratio`` the
steps' own.

``--loop K`` also times K steps per call as the fused loop runs them (``lax.scan`` over a
device-resident dataset, ``config.steps_per_call``), per step.  ``--layers`` times each
convolution implementation on the model's shapes; ``--trunk_layers`` times each layer of the Phi /
R trunk, forward and backward, beside PyTorch's with ``--torch`` (the per-layer profile of those
steps: :func:`trunk_layer_benchmarks`).  The table is printed; ``--json FILE`` writes
everything as JSON (the CPU's model and ``XLA_FLAGS`` included), and the table as Markdown beside
it (``FILE`` with ``.md``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jfesgan import parallel, stages, steps
from jfesgan.bench import memory as memory_lib
from jfesgan.bench import timing
from jfesgan.data import pipeline
from jfesgan.data.pipeline import ArrayDataset
from jfesgan.models import build_models, layers
from jfesgan.models.common import level_widths
from jfesgan.run import host, provenance

FLAGS = flags.FLAGS
# The timed steps: the stages of the plan, and stage 1's two updates on their own.
STEP_NAMES = ("phi", "fesgan", "fesgan_d", "fesgan_g", "real", "joint")
# PyTorch's ways of running (jfesgan.bench.torch_reference.VARIANTS; named here so that the flag
# needs no torch import).
TORCH_VARIANTS = ("eager", "tuned", "compiled")
config_flags.DEFINE_config_file("config", "configs/joint.py", "Configuration file.")
flags.DEFINE_integer("steps", 10, "Timed calls per step function (median reported).")
flags.DEFINE_string("shapes", "48x1,128x3", "Comma-separated SIZExCHANNELS image shapes, or "
                    "'config' for the config's data.image_size and data.channels.")
flags.DEFINE_bool("torch", False, "Also time the same steps in PyTorch (jfesgan/bench/torch_reference.py; "
                  "pip install -e '.[bench]'), each framework and variant in a process of its "
                  "own, and report ratios.")
flags.DEFINE_string("json", "", "Write the results to this JSON file.")
flags.DEFINE_bool("memory", True, "Measure each step's peak memory in a fresh process.")
flags.DEFINE_integer("loop", 0, "Steps per call of the fused loop (0: not timed). On CPU the loop "
                     "is unrolled, so its compile time grows with this number.")
flags.DEFINE_bool("layers", False, "Also time each convolution implementation on the model's shapes.")
flags.DEFINE_bool("trunk_layers", False, "Also time each layer of the Phi / R trunk, forward and "
                  "backward, beside PyTorch's with --torch: the per-layer profile of those steps.")
flags.DEFINE_list("only", [], "Time only these steps (default: all of " + ", ".join(
    STEP_NAMES) + ").")
flags.DEFINE_float("peak_tflops", 0.0, "The device's dense peak TFLOP/s in the compute dtype, for "
                   "MFU (0: from PEAK_TFLOPS by device kind; none on CPU).")
flags.DEFINE_list("torch_variants", list(TORCH_VARIANTS), "With --torch: how PyTorch runs, each "
                  "timed in a process of its own (eager; tuned: fused Adam + channels-last; "
                  "compiled: tuned + torch.compile); the ratio is against the fastest.")
flags.DEFINE_integer("threads", 0, "Threads for each framework (0: the CPUs the process may use, "
                     "XLA:CPU's own choice); PyTorch is given the same number.")
flags.DEFINE_string("time_probe", "", "Internal: jax:STEP, time the step as training runs it in this "
                    "process and print JSON.")
flags.DEFINE_string("memory_probe", "", "Internal: FRAMEWORK:STEP, run three steps and print the "
                    "process's memory as JSON.")

K_CLASSES, SUBJECTS = 7, 100

# Dense peak TFLOP/s per device kind (a substring of ``device_kind``) and compute dtype, from the
# vendors' datasheets (float32 on NVIDIA tensor cores: TF32), for the MFU column.
PEAK_TFLOPS = (("H200", {"bfloat16": 989.4, "float32": 494.7}),
               ("H100", {"bfloat16": 989.4, "float32": 494.7}),
               ("A100", {"bfloat16": 312.0, "float32": 156.0}),
               ("TPU v6", {"bfloat16": 918.0}), ("TPU v5p", {"bfloat16": 459.0}),
               ("TPU v5", {"bfloat16": 197.0}), ("TPU v4", {"bfloat16": 275.0}))


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """The dense peak of ``device_kind`` in ``dtype`` (``--peak_tflops`` wins), or None."""
  if FLAGS.is_parsed() and FLAGS.peak_tflops:
    return FLAGS.peak_tflops
  for kind, peaks in PEAK_TFLOPS:
    if kind in device_kind:
      return peaks.get(dtype)
  return None


def program_flops(fn: Callable, *args, **static) -> float | None:
  """FLOPs of ``fn(*args, **static)`` by XLA's cost analysis of the lowered, not yet optimised
  program (convolutions counted without padding and dilation holes), or None.

  The program is traced as on this backend (the same convolution forms) but lowered for the CPU,
  whose client analyses unoptimised programs: on GPU, ``Lowered.cost_analysis()`` says nothing
  and the compiled program's analysis leaves out the cuDNN convolutions (measured on an H200:
  2.7 GFLOP for a stage-1 step at 128 px, batch 16, that the CPU lowering counts as 116.9)."""
  cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu), args)
  cost = jax.jit(fn, static_argnames=tuple(static)).lower(*abstract, **static).cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and cost.get("flops") else None


def _peak_memory_mb() -> float:
  stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  return memory_lib.host_peak_mb()


def _with_shape(config, shape: tuple[int, int] | None):
  config = config.copy_and_resolve_references()
  if shape is not None:
    config.data.image_size, config.data.channels = shape
  return config


def _fake_data(config, b: int) -> tuple[dict[str, np.ndarray], ArrayDataset]:
  r, c = config.data.image_size, config.data.channels
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(-1, 1, (b, r, r, c)).astype(np.float32),
           "label": rng.integers(0, K_CLASSES, b).astype(np.int32),
           "subject": rng.integers(0, SUBJECTS, b).astype(np.int32)}
  data = ArrayDataset(rng.integers(0, 256, (4 * b, r, r, c)).astype(np.uint8),
                      rng.integers(0, K_CLASSES, 4 * b).astype(np.int32),
                      rng.integers(0, SUBJECTS, 4 * b).astype(np.int32),
                      tuple(map(str, range(K_CLASSES))))
  return batch, data


def _stage_of(step_name: str) -> str:
  """The stage whose state a timed step advances (``fesgan_d``, ``fesgan_g``: stage 1's)."""
  return "fesgan" if step_name.startswith("fesgan") else step_name


class JaxSteps:
  """jfesgan's jitted steps at a config's shapes, each a no-argument call that advances a state."""

  def __init__(self, config, only: str | None = None):
    """States for every stage of the plan, or with ``only`` (a step name) for that step's stage
    and the stages it needs alone."""
    self.config = config
    self.models = build_models(config, K_CLASSES, SUBJECTS)
    self.mesh = parallel.make_mesh()
    self.host_batch, data = _fake_data(config, config.batch_size)
    self.batch = parallel.shard_batch(self.host_batch, self.mesh)
    self.ctx = stages.Context(config=config, models=self.models, train=data)
    self.data = data
    self.key = jax.random.key(0)
    self.finished: dict[str, Any] = {}
    wanted = stages.lineage(_stage_of(only)) if only else stages.NAMES
    for stage in stages.PLAN:
      if stage.name in wanted:
        self.finished[stage.name] = parallel.replicate(stage.create(self.ctx, self.finished),
                                                       self.mesh)

  def initial_params(self) -> dict[str, Any]:
    """The networks' parameters as the stages start them (g, dimg, dz, phi from stage 1; r)."""
    fes = self.finished["fesgan"]
    return {"g": fes.g.params, "dimg": fes.dimg.params, "dz": fes.dz.params,
            "phi": fes.phi.params, "r": self.finished["real"].params}

  def make(self, name: str, block: bool = True) -> Callable[[], Any]:
    """A call of step ``name`` that advances its own copy of the state (states are donated) and
    waits for it, or with ``block=False`` returns its metrics without waiting, as the training
    loop calls it."""
    stage_name = _stage_of(name)
    stage = stages.BY_NAME[stage_name]
    if name in ("fesgan_d", "fesgan_g"):
      update = steps.discriminator_update if name == "fesgan_d" else steps.generator_update
      fn = lambda s, b, k, update=update: update(
          s, b, k, models=self.models, loss=stages._fesgan_loss(self.ctx))  # pylint: disable=protected-access
      jitted, static = parallel.jit_step(fn, self.mesh), {}
    else:
      static = _main_variant(self.config, stage)
      fn = stage.step(self.ctx)
      jitted = parallel.jit_step(fn, self.mesh, static_argnames=stage.static_argnames)
    holder = {"state": jax.tree.map(jnp.array, self.finished[stage_name])}

    def call():
      holder["state"], metrics = jitted(holder["state"], self.batch, self.key, **static)
      if not block:
        return metrics
      jax.block_until_ready(metrics)
      return None
    call.flops = lambda: program_flops(fn, holder["state"], self.batch, self.key, **static)
    return call

  def make_loop(self, name: str, k: int) -> Callable[[], Any]:
    """``k`` steps of stage ``name`` per call, as the fused loop runs them."""
    stage = stages.BY_NAME[name]
    static = _main_variant(self.config, stage)
    loop = parallel.jit_loop(stage.step(self.ctx), pipeline.gather_batch, self.mesh,
                             static_argnames=stage.static_argnames)
    batches = pipeline.Batches(self.data, self.config.batch_size, seed=0, hflip=True)
    arrays = parallel.replicate(batches.arrays(), self.mesh)
    rows = parallel.shard_batch(
        {"index": np.stack([batches.indices(i) for i in range(k)], 1),
         "flip": np.stack([batches.flips(i) for i in range(k)], 1)}, self.mesh)
    plan = np.arange(k, dtype=np.int32)
    holder = {"state": jax.tree.map(jnp.array, self.finished[name])}

    def call():
      holder["state"], metrics = loop(holder["state"], arrays, rows["index"], rows["flip"], plan,
                                      self.key, **static)
      jax.block_until_ready(metrics)
    return call


def _main_variant(config, stage: stages.Stage) -> dict[str, Any]:
  """The static arguments of the step as most of the stage runs it: its last iteration's (past
  stage 1's warm-up, ``fesgan.warmup``; with n_critic > 1 a generator update when the stage's
  steps are a multiple of it)."""
  return stage.static(config, stage.steps(config) - 1) if stage.static else {}


def check_torch_reference(config, jax_steps: JaxSteps) -> None:
  """The PyTorch reference (jfesgan.bench.torch_reference) started from jfesgan's parameters has
  the same parameter counts and computes the same outputs as jfesgan's networks, or raises."""
  from jfesgan.bench import torch_reference  # torch: only when asked
  ref = torch_reference.TorchReference(config, K_CLASSES, SUBJECTS)
  params = jax.device_get(jax_steps.initial_params())
  counts = {name: sum(np.size(a) for a in jax.tree.leaves(p)) for name, p in params.items()}
  if ref.parameter_counts() != counts:
    raise AssertionError(f"parameter counts differ: torch {ref.parameter_counts()} vs "
                         f"jfesgan {counts}")
  torch_reference.load_jax_params(ref, params)
  # Checked in float32 on the CPU (no TF32, no bfloat16), whatever the benchmark then runs.
  config = jax_steps.config.copy_and_resolve_references()
  config.model.dtype = "float32"
  models = build_models(config, K_CLASSES, SUBJECTS)
  x = jax_steps.host_batch["image"][:4]
  got = torch_reference.forward_outputs(ref, x, np.zeros((4, models.latent_dim), np.float32),
                                        np.eye(K_CLASSES, dtype=np.float32)[:4])
  with jax.default_device(jax.devices("cpu")[0]):
    want = {"dimg_critic": models.dimg.apply({"params": params["dimg"]}, x)[0],
            "r_logits": models.r.apply({"params": params["r"]}, x)[1],
            "encode": models.g.apply({"params": params["g"]}, x, method="encode")}
  for name, value in want.items():
    if not np.allclose(got[name], np.asarray(value), rtol=1e-3, atol=1e-4):
      raise AssertionError(f"the PyTorch reference's {name} differs from jfesgan's")


def torch_device(config) -> tuple[str, Any]:
  """Where the PyTorch reference runs beside jfesgan: the GPU when JAX runs on one (with TF32
  matmuls allowed, as XLA allows them), else the CPU; in either, under bfloat16 autocast for
  ``model.dtype="bfloat16"``."""
  import torch  # pylint: disable=g-import-not-at-top

  from jfesgan.bench import torch_reference  # torch: only when asked
  if jax.default_backend() != "gpu" or not torch.cuda.is_available():
    return "cpu", torch_reference.autocast_dtype(config)
  return "cuda", torch_reference.cuda_mode(config)


# Idle time before each timed call: both runtimes' worker threads spin for a while after a call,
# and would take the cores from the next call (measured: without it the recogniser step at
# 128 px ran 23 % slower in jfesgan and 24 % in PyTorch than with it).
PAUSE_S = 0.2


def _time_alternating(calls: dict[str, Callable[[], Any]], n: int) -> dict[str, dict[str, float]]:
  """First-call seconds and the median of ``n`` later calls of each, alternating between them,
  each after ``PAUSE_S`` idle."""
  out = {}
  for name, call in calls.items():
    t = time.perf_counter()
    call()
    out[name] = {"first_call_s": time.perf_counter() - t}
  times = {name: [] for name in calls}
  for _ in range(n):
    for name, call in calls.items():
      time.sleep(PAUSE_S)
      t = time.perf_counter()
      call()
      times[name].append(time.perf_counter() - t)
  for name in calls:
    out[name]["step_s"] = statistics.median(times[name])
  return out


def _memory_probe(argv_config: list[str], framework: str, name: str,
                  shape: tuple[int, int]) -> dict[str, float]:
  """Peak and pre-step resident memory (MB) of three steps of ``name`` in a fresh process."""
  # Each framework alone in its process: the PyTorch probe never imports JAX.
  module, probe = (("jfesgan.bench.benchmark", f"--memory_probe=jax:{name}") if framework == "jax" else
                   ("jfesgan.bench.torch_reference", f"--memory_probe={name}"))
  cmd = [sys.executable, "-m", module, *argv_config, f"--config.data.image_size={shape[0]}",
         f"--config.data.channels={shape[1]}", probe]
  if framework == "torch" and jax.default_backend() == "gpu":
    cmd.append("--device=cuda")
  done = subprocess.run(cmd, capture_output=True, text=True, check=False)
  lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
  if done.returncode or not lines:
    raise RuntimeError(f"memory probe {framework}:{name} failed: {done.stderr[-2000:]}")
  return json.loads(lines[-1])


def _time_probe(argv_config: list[str], framework: str, name: str, shape: tuple[int, int],
                steps: int, variant: str = "eager", threads: int = 0) -> dict[str, Any]:
  """Step ``name`` timed as training runs it (:func:`jfesgan.bench.timing.as_training_runs`) in a
  fresh process of ``framework`` alone (PyTorch as ``variant``), with ``threads`` threads."""
  threads = threads or timing.cpu_threads()
  shape_args = [f"--config.data.image_size={shape[0]}", f"--config.data.channels={shape[1]}"]
  if framework == "jax":
    cmd = [sys.executable, "-m", "jfesgan.bench.benchmark", *argv_config, *shape_args,
           f"--time_probe=jax:{name}", f"--steps={steps}"]
    if threads != timing.cpu_threads():  # XLA:CPU's pool: the process's CPUs, unless told
      cmd = ["taskset", "-c", f"0-{threads - 1}", *cmd]
  else:
    cmd = [sys.executable, "-m", "jfesgan.bench.torch_reference", *argv_config, *shape_args,
           f"--time_probe={name}", f"--variant={variant}", f"--steps={steps}",
           f"--threads={threads}"]
    if jax.default_backend() == "gpu":
      cmd.append("--device=cuda")
  done = subprocess.run(cmd, capture_output=True, text=True, check=False)
  lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
  if done.returncode or not lines:
    raise RuntimeError(f"time probe {framework}:{name} ({variant}) failed: {done.stderr[-2000:]}")
  return json.loads(lines[-1])


def run_time_probe(config, spec: str, steps: int) -> None:
  """The child side of ``_time_probe`` for jfesgan: the step called back to back, as the training
  loop calls it; prints the timing as one JSON line."""
  framework, name = spec.split(":")
  if framework != "jax":
    raise ValueError(f"--time_probe: only jax here (PyTorch: python -m jfesgan.bench.torch_reference), "
                     f"got {framework!r}")
  call = JaxSteps(config, only=name).make(name, block=False)
  out = timing.as_training_runs(call, jax.block_until_ready, steps=steps)
  print(json.dumps({**out, "threads": timing.cpu_threads()}))


def run_memory_probe(config, spec: str) -> None:
  """The child side of ``_memory_probe`` for jfesgan: prints ``jfesgan.bench.memory.probe``'s
  readings as one JSON line."""
  framework, name = spec.split(":")
  if framework != "jax":
    raise ValueError(f"--memory_probe: only jax here (PyTorch: python -m jfesgan.bench.torch_reference), "
                     f"got {framework!r}")
  # The step's own state alone, as a run of that stage holds it (the stages it was created from
  # are dropped once it exists; the PyTorch probe likewise builds no optimiser state it does not
  # step).
  jax_steps = JaxSteps(config, only=name)
  call = jax_steps.make(name)
  jax_steps.finished.clear()
  host.release_free_memory()
  print(json.dumps(memory_lib.probe(call, _peak_memory_mb,
                                          resettable=jax.default_backend() == "cpu",
                                          after_first=host.release_free_memory)))


def shape_benchmarks(config, n: int, with_torch: bool, loop_steps: int = 0,
                     names: tuple[str, ...] = STEP_NAMES, argv_config: list[str] | None = None,
                     torch_variants: tuple[str, ...] = TORCH_VARIANTS,
                     threads: int = 0) -> dict[str, dict]:
  """Per-step times of the steps ``names`` at ``config``'s shapes.

  In this process: jfesgan's first call (compile) and the median of ``n`` calls each after an
  idle pause (``jfesgan_s``), its FLOPs and MFU, and the fused loop's.  With ``with_torch`` (and
  ``argv_config``, the command line's config flags for the child processes): the PyTorch
  reference is first checked to compute jfesgan's functions, then each step is timed as
  training runs it, ``n`` calls back to back per round after 3 warm-ups, in a process of its own
  per framework and PyTorch variant, with the same thread count (``jfesgan_train_s``,
  ``torch_<variant>_s``); ``ratio`` = jfesgan / the fastest PyTorch variant (``torch_best``).
  """
  js = JaxSteps(config)
  if with_torch:
    check_torch_reference(config, js)  # raises unless both compute the same functions
  peak = peak_tflops(jax.devices()[0].device_kind, config.model.get("dtype", "float32"))
  shape = (config.data.image_size, config.data.channels)
  results = {}
  for name in names:
    call = js.make(name)
    timed = _time_alternating({"jax": call}, n)
    flops = call.flops()
    row = {"jfesgan_s": round(timed["jax"]["step_s"], 4),
           "jfesgan_compile_plus_first_s": round(timed["jax"]["first_call_s"], 2),
           "images_per_s": round(config.batch_size / timed["jax"]["step_s"], 1),
           "gflops_per_step": round(flops / 1e9, 2) if flops else None}
    seconds = {"jfesgan": timed["jax"]["step_s"]}
    if with_torch:
      argv = argv_config or []
      train = _time_probe(argv, "jax", name, shape, n, threads=threads)
      row.update(jfesgan_train_s=train["step_s"], threads=train["threads"])
      for variant in torch_variants:
        t = _time_probe(argv, "torch", name, shape, n, variant, threads)
        row[f"torch_{variant}_s"] = t["step_s"]
        row[f"torch_{variant}_first_s"] = t["first_call_s"]
      best = min(torch_variants, key=lambda v: row[f"torch_{v}_s"])
      row.update(torch_best=best, torch_best_s=row[f"torch_{best}_s"],
                 torch_images_per_s=round(config.batch_size / row[f"torch_{best}_s"], 1),
                 ratio=round(train["step_s"] / row[f"torch_{best}_s"], 3))
      if "eager" in torch_variants:
        row["ratio_eager"] = round(train["step_s"] / row["torch_eager_s"], 3)
      seconds.update(jfesgan=train["step_s"], torch=row["torch_best_s"])
    if loop_steps > 1 and name in stages.BY_NAME:
      loop = js.make_loop(name, loop_steps)
      t = _time_alternating({"loop": loop}, max(2, n // 4))["loop"]
      row.update(loop_compile_plus_first_s=round(t["first_call_s"], 2),
                 loop_step_s=round(t["step_s"] / loop_steps, 4),
                 loop_images_per_s=round(config.batch_size * loop_steps / t["step_s"], 1))
      seconds["jfesgan_loop"] = t["step_s"] / loop_steps
    if flops and peak:
      for who, sec in seconds.items():
        row[f"{who}_mfu"] = round(flops / sec / (peak * 1e12), 4)
    results[name] = row
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
      t = _time_alternating({
          "down": lambda: jax.block_until_ready(down(x, k4)),
          "second": lambda: jax.block_until_ready(second(k4)),
          "up": lambda: jax.block_until_ready(up(y, kt))}, n)
      rows.append({"shape": f"{b}x{size}x{size}x{cin}->{cout}", "impl": impl,
                   "conv_s2_fwd_bwd_ms": round(t["down"]["step_s"] * 1e3, 2),
                   "conv_s2_second_order_ms": round(t["second"]["step_s"] * 1e3, 2),
                   "convT_fwd_bwd_ms": round(t["up"]["step_s"] * 1e3, 2)})
    size, cin = size // 2, cout
  return rows


def trunk_layer_benchmarks(config, n: int, with_torch: bool, threads: int = 0) -> list[dict]:
  """Forward + backward milliseconds of each layer of the Phi / R trunk (:class:`ConvTrunk`) at
  the config's shape and batch: ReLU of jfesgan's convolution (``model.conv_impl``) or of the
  dense layer, gradients of kernel, bias and (but for the first layer, whose input is the data)
  input; with ``with_torch`` beside the same layer in PyTorch (channels-last, as the ``tuned``
  variant runs), with the same parameters, checked to give the same loss first.  Both run in
  this process, each timed as training runs (:func:`timing.as_training_runs`: 3 warm-ups, then 5
  rounds of ``n`` calls back to back, the median round), with ``threads`` PyTorch threads (0:
  the CPUs the process may use, XLA:CPU's own count).  The per-layer profile of a step: the rows'
  sum against the step's own time says how much of the step is its layers and how much the rest
  (normalisation, loss, optimiser, metrics)."""
  b, image, cin = config.batch_size, config.data.image_size, config.data.channels
  impl = layers.resolve_impl(config.model.conv_impl)
  specs, size = [], image
  for w in level_widths(config.model.width, config.model.max_width, config.model.num_down):
    specs += [(4, 2, size, cin, w), (3, 1, size // 2, w, w)]
    size, cin = size // 2, w
  specs.append((None, None, size, cin, config.model.embed_dim))
  if with_torch:
    import torch  # pylint: disable=g-import-not-at-top

    from jfesgan.bench import torch_reference  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(threads or timing.cpu_threads())
  rng = np.random.default_rng(0)
  rows = []
  for k, stride, size, cin, cout in specs:
    first = size == image
    if k is None:
      x = rng.standard_normal((b, size * size * cin)).astype(np.float32)
      kern = (rng.standard_normal((size * size * cin, cout)) / np.sqrt(size * size * cin))
      name = f"dense {size * size * cin}->{cout}"
      fwd = lambda x, kern, bias: x @ kern + bias
    else:
      x = rng.standard_normal((b, size, size, cin)).astype(np.float32)
      kern = rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)
      name = f"conv {k}x{k}/{stride} {size}x{size}x{cin}->{cout}"
      fwd = (lambda x, kern, bias, stride=stride: layers.conv2d(x, kern, stride, impl) + bias)
    kern = kern.astype(np.float32)
    bias = (0.01 * rng.standard_normal(cout)).astype(np.float32)
    loss = lambda x, kern, bias, fwd=fwd: jnp.sum(jax.nn.relu(fwd(x, kern, bias))**2)
    grad = jax.jit(jax.grad(loss, argnums=(1, 2) if first else (0, 1, 2)))
    args = tuple(jnp.asarray(a) for a in (x, kern, bias))
    calls = {"jfesgan": (lambda grad=grad, args=args: grad(*args), jax.block_until_ready)}
    if with_torch:
      call, value = torch_reference.trunk_layer_call(x, kern, bias, stride or 1,
                                                     input_grad=not first)
      calls["torch"] = (call, lambda _: None)
      mine = float(loss(*args))
      if not np.isclose(mine, value, rtol=1e-3):
        raise RuntimeError(f"trunk layer {name}: PyTorch's loss {value} is not jfesgan's {mine}")
    t = {fw: timing.as_training_runs(call, sync, steps=n, rounds=5)
         for fw, (call, sync) in calls.items()}
    row = {"layer": name, "impl": impl if k is not None else "dot",
           "jfesgan_ms": round(t["jfesgan"]["step_s"] * 1e3, 2)}
    if with_torch:
      row["torch_ms"] = round(t["torch"]["step_s"] * 1e3, 2)
      row["ratio"] = round(row["jfesgan_ms"] / row["torch_ms"], 2)
    rows.append(row)
  return rows


def trunk_table(report: dict) -> str:
  """The per-layer profile (``report["trunk_layers"]``) as Markdown: each layer, their sum, and
  beside it the ``phi`` and ``real`` steps' own times where the report has them."""
  lines = []
  for shape, rows in report.get("trunk_layers", {}).items():
    torch_cols = "torch_ms" in rows[0]
    head = ["shape", "trunk layer (fwd + bwd)", "jfesgan ms"] + (["PyTorch ms", "ratio"]
                                                                 if torch_cols else [])
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
      cells = [shape, f"{row['layer']} ({row['impl']})", f"{row['jfesgan_ms']:.1f}"]
      cells += [f"{row['torch_ms']:.1f}", f"{row['ratio']:.2f}"] if torch_cols else []
      lines.append("| " + " | ".join(cells) + " |")
    mine = sum(r["jfesgan_ms"] for r in rows)
    cells = [shape, "**sum of the layers**", f"{mine:.1f}"]
    if torch_cols:
      theirs = sum(r["torch_ms"] for r in rows)
      cells += [f"{theirs:.1f}", f"**{mine / theirs:.2f}**"]
    lines.append("| " + " | ".join(cells) + " |")
    for step in ("phi", "real"):
      row = report["shapes"].get(shape, {}).get(step)
      if row and torch_cols and "jfesgan_train_s" in row:
        lines.append(f"| {shape} | the whole `{step}` step (as trained; PyTorch: its best) | "
                     f"{1e3 * row['jfesgan_train_s']:.1f} | {1e3 * row['torch_best_s']:.1f} | "
                     f"{row['ratio']:.2f} |")
    lines.append("")
  return "\n".join(lines)


def parse_shapes(text: str) -> list[tuple[int, int] | None]:
  """'48x1,128x3' -> [(48, 1), (128, 3)]; 'config' -> [None] (the config's own shape)."""
  if text.strip() == "config":
    return [None]
  shapes = []
  for item in text.split(","):
    try:
      size, channels = (int(v) for v in item.strip().lower().split("x"))
    except ValueError:
      raise ValueError(f"--shapes: {item!r} is not SIZExCHANNELS (e.g. 48x1)") from None
    shapes.append((size, channels))
  return shapes


def parse_only(names: list[str]) -> tuple[str, ...]:
  """``--only``'s step names (all of STEP_NAMES when empty); unknown ones are named."""
  unknown = sorted(set(names) - set(STEP_NAMES))
  if unknown:
    raise ValueError(f"--only: unknown steps {unknown}; known: {', '.join(STEP_NAMES)}")
  return tuple(names) or STEP_NAMES


def table(report: dict) -> str:
  """The results as a Markdown table."""
  torch_cols = report["torch"] is not None
  rows_all = [row for rows in report["shapes"].values() for row in rows.values()]
  loop_cols = any("loop_step_s" in row for row in rows_all)
  mfu_cols = any("jfesgan_mfu" in row for row in rows_all)
  variants = [v for v in TORCH_VARIANTS if any(f"torch_{v}_s" in row for row in rows_all)]
  head = ["shape", "step"]
  if torch_cols:
    head += ["jfesgan s (as trained)"] + [f"PyTorch {v} s" for v in variants]
    head += ["best PyTorch", "ratio vs best"] + (["ratio vs eager"] if "eager" in variants else [])
  head += ["jfesgan s (paused calls)", "jfesgan img/s"] + (["best PyTorch img/s"] if torch_cols
                                                           else [])
  head += ["fused loop s/step", "loop img/s"] if loop_cols else []
  head += ["GFLOP/step"]
  if mfu_cols:
    head += ["jfesgan MFU %"] + (["PyTorch MFU %"] if torch_cols else [])
    head += ["loop MFU %"] if loop_cols else []
  head += ["jfesgan compile+first s"] + ([f"PyTorch {v} first s" for v in variants]
                                         if torch_cols else [])
  head += ["jfesgan peak MB"] + (["PyTorch peak MB", "mem ratio"] if torch_cols else [])
  lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
  for shape, rows in report["shapes"].items():
    for name, row in rows.items():
      cells = [shape, name]
      if torch_cols:
        cells += [f"{row['jfesgan_train_s']:.3f}"]
        cells += [f"{row[f'torch_{v}_s']:.3f}" if f"torch_{v}_s" in row else "-" for v in variants]
        cells += [row["torch_best"], f"**{row['ratio']:.2f}**"]
        cells += [f"{row['ratio_eager']:.2f}"] if "eager" in variants else []
      cells += [f"{row['jfesgan_s']:.3f}", f"{row['images_per_s']:.0f}"]
      cells += [f"{row['torch_images_per_s']:.0f}"] if torch_cols else []
      if loop_cols:
        cells += ([f"{row['loop_step_s']:.4f}", f"{row['loop_images_per_s']:.0f}"]
                  if "loop_step_s" in row else ["-", "-"])
      cells += [f"{row['gflops_per_step']:.1f}" if row.get("gflops_per_step") else "-"]
      if mfu_cols:
        pct = lambda k: f"{100 * row[k]:.1f}" if k in row else "-"  # pylint: disable=cell-var-from-loop
        cells += [pct("jfesgan_mfu")] + ([pct("torch_mfu")] if torch_cols else [])
        cells += [pct("jfesgan_loop_mfu")] if loop_cols else []
      cells += [f"{row['jfesgan_compile_plus_first_s']:.1f}"]
      if torch_cols:
        cells += [f"{row[f'torch_{v}_first_s']:.1f}" if f"torch_{v}_first_s" in row else "-"
                  for v in variants]
      mem = row.get("memory", {})
      cells += [f"{mem['jax']['peak_mb']:.0f}" if "jax" in mem else "-"]
      if torch_cols:
        cells += [f"{mem['torch']['peak_mb']:.0f}" if "torch" in mem else "-",
                  f"{row['mem_ratio']:.2f}" if "mem_ratio" in row else "-"]
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


HARNESS = (
    "Harness: with PyTorch, each framework (and each PyTorch variant: eager = plain NCHW and "
    "Adam's default implementation; tuned = fused Adam + channels-last; compiled = tuned + "
    "torch.compile of every network but D_img, whose gradient penalty needs a second derivative) "
    "runs each step in a process of its own, with the same thread count, 3 warm-up steps (the "
    "first compiles), then 3 rounds of back-to-back steps with one wait at the end of each, as "
    "a training loop runs them; the median round's seconds per step are reported.  Both sides "
    "compute the same metrics (every loss term, accuracies, gradient, parameter and update "
    "norms).  ratio = jfesgan / the fastest PyTorch variant (below 1: jfesgan is faster).  "
    "'paused calls' times jfesgan in the parent process, each call waited for after an idle "
    "pause.  Peak MB is each step's process alone, compilation included.")


TRUNK_HARNESS = (
    "Each layer of the Phi / R trunk at the step's shape and batch, forward and backward of the "
    "sum of squares of its ReLU output (gradients of kernel, bias and, but for the first layer, "
    "input), jfesgan's convolution against PyTorch's channels-last layer with the same "
    "parameters (the same loss checked first), both in one process, each timed back to back as "
    "training runs (3 warm-ups, 5 rounds, the median round's milliseconds per call).  The sum of "
    "the layers against the whole step says how much of the step is its layers.")


def markdown(report: dict) -> str:
  """The report as a Markdown page: the machine, the command, the harness and the table."""
  cpu = f"; CPU: {report['cpu']}" if report.get("cpu") else ""
  return (f"# jfesgan benchmark\n\n`{report['command']}`\n\n"
          f"Commit: `{report.get('commit', 'unknown')}`.\n\n"
          f"{report['backend']} x{report['devices']} ({report['device_kind']}{cpu}), jax "
          f"{report['jax']}, {report.get('dtype', 'float32')}"
          f"{'; ' + report['torch'] if report['torch'] else ''}; batch {report['batch_size']}; "
          f"XLA_FLAGS: `{report.get('xla_flags', '')}`.\n\n"
          + (HARNESS + "\n\n" if report["torch"] else "") + table(report) + "\n"
          + ("\n## Per-layer profile of the trunk (Phi, R)\n\n" + TRUNK_HARNESS + "\n\n"
             + trunk_table(report) if report.get("trunk_layers") else ""))


# The vector extensions that decide which kernels XLA:CPU and PyTorch's oneDNN run, in the order
# a CPU gains them (AVX-512 and AMX are where the CPU families part ways).
VECTOR_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
  """The CPU's model name and its vector extensions of :data:`VECTOR_FEATURES` (Linux
  ``/proc/cpuinfo``: "Intel(R) Xeon(R) Processor [avx2, avx512f, avx512_vnni]"), or the
  platform's processor string."""
  name, features = None, set()
  try:
    with open(cpuinfo) as f:
      for line in f:
        if line.startswith("model name") and name is None:
          name = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not features:
          features = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  if name is None:
    import platform  # pylint: disable=g-import-not-at-top
    return platform.processor() or "unknown"
  have = [f for f in VECTOR_FEATURES if f in features]
  return f"{name} [{', '.join(have)}]" if have else name


def _config_argv(argv: list[str]) -> list[str]:
  """The command line's --config flags (file and overrides), for the memory probes."""
  out, args = [], list(argv[1:])
  for i, a in enumerate(args):
    if a in ("--config", "-config") and i + 1 < len(args):
      out += [a, args[i + 1]]
    elif a.startswith(("--config", "-config")):
      out.append(a)
  return out


def main(argv):
  config = FLAGS.config
  if FLAGS.memory_probe:
    run_memory_probe(config.copy_and_resolve_references(), FLAGS.memory_probe)
    return
  if FLAGS.time_probe:
    run_time_probe(config.copy_and_resolve_references(), FLAGS.time_probe, FLAGS.steps)
    return
  unknown = sorted(set(FLAGS.torch_variants) - set(TORCH_VARIANTS))
  if unknown:
    raise app.UsageError(f"--torch_variants: unknown {unknown}; known: {list(TORCH_VARIANTS)}")
  shapes = parse_shapes(FLAGS.shapes)
  names = parse_only(FLAGS.only)
  report = {"backend": jax.default_backend(), "devices": jax.device_count(),
            "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
            "batch_size": config.batch_size, "width": config.model.width,
            "conv_impl": config.model.conv_impl, "dtype": config.model.get("dtype", "float32"),
            "torch": None, "shapes": {}, "cpu": cpu_model(), "commit": provenance.commit(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "command": " ".join(["jfesgan benchmark", *sys.argv[1:]])}
  for shape in shapes:
    cfg = _with_shape(config, shape)
    if FLAGS.torch:
      from jfesgan.bench import torch_reference  # torch: only when asked
      torch_reference.check_config(cfg)
      report["torch"] = torch_reference.describe(*torch_device(cfg)).replace(
          ", eager", ", variants " + "/".join(FLAGS.torch_variants))
    key = f"{cfg.data.image_size}x{cfg.data.image_size}x{cfg.data.channels}"
    rows = shape_benchmarks(cfg, FLAGS.steps, FLAGS.torch, FLAGS.loop, names,
                            argv_config=_config_argv(sys.argv),
                            torch_variants=tuple(FLAGS.torch_variants), threads=FLAGS.threads)
    if FLAGS.memory:
      for name, row in rows.items():
        frameworks = ("jax", "torch") if FLAGS.torch else ("jax",)
        row["memory"] = {fw: _memory_probe(_config_argv(sys.argv), fw, name,
                                           (cfg.data.image_size, cfg.data.channels))
                         for fw in frameworks}
        if FLAGS.torch:
          mem = row["memory"]
          row["mem_ratio"] = round(mem["jax"]["peak_mb"] / mem["torch"]["peak_mb"], 2)
          if "step_peak_mb" in mem["jax"] and "step_peak_mb" in mem["torch"]:
            row["step_mem_ratio"] = round(
                mem["jax"]["step_peak_mb"] / mem["torch"]["step_peak_mb"], 2)
    report["shapes"][key] = rows
    if FLAGS.layers:
      report.setdefault("layers", {})[key] = layer_benchmarks(cfg, max(3, FLAGS.steps // 4))
    if FLAGS.trunk_layers:
      report.setdefault("trunk_layers", {})[key] = trunk_layer_benchmarks(
          cfg, max(5, FLAGS.steps), FLAGS.torch, FLAGS.threads)
      print(trunk_table({**report, "trunk_layers": {key: report["trunk_layers"][key]}}), flush=True)
    print(table({**report, "shapes": {key: rows}}), flush=True)
  if FLAGS.json:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json)), exist_ok=True)
    with open(FLAGS.json, "w") as f:
      json.dump(report, f, indent=1)
    with open(os.path.splitext(FLAGS.json)[0] + ".md", "w") as f:
      f.write(markdown(report))
  print(json.dumps(report, indent=1) if not FLAGS.json else f"wrote {FLAGS.json}")


def run() -> None:
  """``jfesgan benchmark`` (and ``python -m jfesgan.bench.benchmark``)."""
  app.run(main)


if __name__ == "__main__":
  run()
