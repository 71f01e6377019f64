"""Orchestration of the stages: data, states, the training loops, checkpoints, logs and reports.

No maths here: losses live in :mod:`jfesgan.losses`, updates in :mod:`jfesgan.steps`.
Stages, in order: ``phi`` (stage 0: identity network on training subject ids), ``fesgan`` (stage
1: E, G, D_img, D_z), ``r_real`` (a recogniser on real images only: the judge of synthetic
expressions and the real-only baseline), ``joint`` (stage 2: the recogniser R learnt jointly with
the generator).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
import tqdm
from absl import logging

from jfesgan import checkpointing, evaluation, metrics as metrics_lib, parallel, state as state_lib
from jfesgan import steps, visualize
from jfesgan.data import pipeline
from jfesgan.models import Models, build_models

# Fixed ids that name each stage's random stream: fold_in(root, id).
STAGE_IDS = {"phi": 0, "fesgan": 1, "r_real": 2, "eval": 3, "joint": 4}
KNOWN_STAGES = ("phi", "fesgan", "joint")


def stage_key(seed: int, stage: str) -> jax.Array:
  """The root random key of a stage: independent across stages, fixed by the config seed."""
  return jax.random.fold_in(jax.random.key(seed), STAGE_IDS[stage])


def run_stage(name: str, *, create: Callable[[], Any], step_fn: Callable, batches: pipeline.Batches,
              num_steps: int, rng: jax.Array, mesh, workdir: str, writer: metrics_lib.MetricWriter,
              log_every: int, checkpoint_every: int, variant: Callable[[int], dict] | None = None,
              on_step: Callable[[int, Any], None] | None = None,
              show: tuple[str, ...] = ()) -> Any:
  """Trains one stage from its latest checkpoint (or from ``create()``) up to ``num_steps``.

  ``step_fn(state, batch, rng, **variant(step))`` is jitted once per distinct variant.  Metrics
  are logged every ``log_every`` steps, the state saved every ``checkpoint_every`` steps and at
  the end; ``on_step(step, state)`` runs after each step (for sample grids).  The progress bar
  shows the metrics named in ``show`` (default: the stage's loss and accuracy, where present).
  """
  ckpt = checkpointing.StageCheckpointer(workdir, name)
  state = ckpt.restore_or_create(create, parallel.replicated(mesh))
  start = int(jax.device_get(state.step))
  if start >= num_steps:
    logging.info("stage %s: restored at step %d, already done", name, start)
    ckpt.close()
    return state
  if start:
    logging.info("stage %s: resuming from step %d", name, start)
  compiled: dict[tuple, Callable] = {}
  # In a log file (no terminal) a line every 30 s is plenty.
  bar = tqdm.tqdm(total=num_steps, initial=start, desc=f"{name:>7s}",
                  mininterval=1.0 if sys.stderr.isatty() else 30.0,
                  dynamic_ncols=True, disable=jax.process_index() != 0)
  for step in range(start, num_steps):
    kwargs = variant(step) if variant else {}
    key = tuple(sorted(kwargs.items()))
    if key not in compiled:
      compiled[key] = parallel.jit_step(functools.partial(step_fn, **kwargs), mesh)
    batch = parallel.shard_batch(batches.at(step), mesh)
    state, metrics = compiled[key](state, batch, jax.random.fold_in(rng, step))
    done = step + 1
    if done % log_every == 0 or done == num_steps:
      values = metrics_lib.to_floats(metrics)
      writer.scalars(done, values, name)
      keys = show or [k for k in values if k.split("/", 1)[-1] in ("loss", "acc")]
      bar.set_postfix({k: f"{values[k]:.3g}" for k in keys if k in values}, refresh=False)
    bar.update(1)
    if on_step is not None:
      on_step(done, state)
    if done % checkpoint_every == 0 or done == num_steps:
      ckpt.save(done, state)
  bar.close()
  writer.flush()
  ckpt.close()
  return state


def _save_json(obj: Any, path: str) -> None:
  if jax.process_index() == 0:
    with open(path, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True)


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Runs the configured stages in ``workdir`` (resuming what is there) and evaluates.

  Returns a summary: scores, wall times and the paths of everything written.
  """
  t_start = time.time()
  workdir = os.path.abspath(workdir)
  os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
  unknown = [s for s in config.stages if s not in KNOWN_STAGES]
  if unknown:
    raise ValueError(f"config.stages has unknown stages {unknown}; known: {KNOWN_STAGES}")
  if not config.stages or tuple(config.stages) != KNOWN_STAGES[:len(config.stages)]:
    raise ValueError(f"config.stages={tuple(config.stages)} must be a non-empty prefix of "
                     f"{KNOWN_STAGES}: each stage builds on the one before")
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  logging.info("devices: %d x %s (%d processes); mesh %s", jax.device_count(),
               jax.devices()[0].device_kind, jax.process_count(), dict(mesh.shape))
  _save_json(config.to_dict(), os.path.join(workdir, "config.json"))

  train, test = pipeline.train_test(config.data)
  spec = pipeline.face_spec(config.data) if config.data.name == "procedural_faces" else None
  logging.info("data: %d train images (%d subjects), %d test images (%d subjects), classes %s",
               len(train), len(np.unique(train.subject)), len(test), len(np.unique(test.subject)),
               train.class_names)
  if (train.subject < 0).any() and (config.phi.steps > 0 or config.stage1.identity_weight > 0):
    raise ValueError(f"{config.data.name} has no subject ids, so there is no identity network to "
                     "train: set phi.steps=0 and stage1.identity_weight=0 (configs/fer2013.py)")
  models = build_models(config, train.num_classes, num_subjects=len(np.unique(train.subject)))
  writer = metrics_lib.MetricWriter(workdir)
  ev = evaluation.Evaluator(models, config.eval.batch_size)
  common = dict(mesh=mesh, workdir=workdir, writer=writer, log_every=config.log_every,
                checkpoint_every=config.checkpoint_every)
  times: dict[str, float] = {}
  paths = {"workdir": workdir, "metrics": writer.jsonl_path, "tensorboard": writer.tb_dir,
           "checkpoints": os.path.join(workdir, "checkpoints")}

  def batches(seed_name: str, **kw) -> pipeline.Batches:
    return pipeline.Batches(train, config.batch_size, seed=config.seed * 1000 + STAGE_IDS[seed_name],
                            hflip=config.data.hflip, **kw)

  t = time.time()
  # Stage 1 donates its states, phi included: after it, use fes.phi rather than phi.
  phi = run_stage(
      "phi", create=lambda: state_lib.create_phi_state(models, config, stage_key(config.seed, "phi")),
      step_fn=functools.partial(steps.phi_step, model=models.phi),
      batches=batches("phi", subject_index=True), num_steps=config.phi.steps,
      rng=stage_key(config.seed, "phi"), **common)
  times["phi"] = time.time() - t

  summary: dict[str, Any] = {}

  def save_confusion(cm: np.ndarray, name: str, title: str) -> None:
    """Writes ``confusion_<name>.json`` and ``.png`` into the workdir."""
    base = os.path.join(workdir, f"confusion_{name}")
    per_class = evaluation.per_class_accuracy(cm)
    _save_json({"class_names": list(train.class_names), "rows_true_columns_predicted": cm.tolist(),
                "per_class_accuracy": dict(zip(train.class_names, per_class.tolist())),
                "accuracy": float(np.trace(cm) / max(cm.sum(), 1))}, base + ".json")
    if jax.process_index() == 0:
      visualize.save_png(visualize.confusion_image(cm, train.class_names, title), base + ".png")
    paths[f"confusion_{name}"] = base + ".png"

  if "fesgan" in config.stages:
    def save_grid(step: int, states, final: bool = False) -> None:
      # Periodic grids during training; the last one is drawn once, after the stage.
      if not final and (step % config.sample_every or step >= config.stage1.steps):
        return
      g = evaluation.grid_contents(ev, states.g.params, test, config.eval.grid_rows, config.seed,
                                   models.latent_dim)
      img = visualize.synthesis_grid(g["inputs"], g["recon"], g["translations"], g["prior"],
                                     train.class_names)
      path = os.path.join(workdir, "samples", f"fesgan_{step:06d}.png")
      if jax.process_index() == 0:
        visualize.save_png(img, path)
      writer.image(step, "samples/fesgan", img)
      paths["samples"] = path

    t = time.time()
    n_critic = config.stage1.n_critic
    fes = run_stage(
        "fesgan",
        create=lambda: state_lib.create_fesgan_states(models, config, stage_key(config.seed, "fesgan"),
                                                      phi),
        step_fn=functools.partial(steps.fesgan_step, models=models, cfg=config.stage1),
        batches=batches("fesgan"), num_steps=config.stage1.steps, rng=stage_key(config.seed, "fesgan"),
        variant=lambda s: {"update_g": s % n_critic == n_critic - 1}, on_step=save_grid,
        show=("g/rec", "g/expr", "g/expr_acc_t", "dimg/wasserstein", "dimg/cls_acc"), **common)
    times["fesgan"] = time.time() - t
    save_grid(int(fes.step), fes, final=True)

    t = time.time()
    r_real = run_stage(
        "r_real",
        create=lambda: state_lib.create_r_state(models, config.eval.r, stage_key(config.seed, "r_real")),
        step_fn=functools.partial(steps.recognizer_step, model=models.r, prefix="r_real"),
        batches=batches("r_real"), num_steps=config.eval.r.steps,
        rng=stage_key(config.seed, "r_real"), **common)
    times["r_real"] = time.time() - t

    t = time.time()
    real_scores, cm = evaluation.recognition_scores(ev, r_real.params, test, "eval/real")
    summary.update(real_scores)
    summary.update(evaluation.synthesis_scores(
        ev, g_params=fes.g.params, phi_params=fes.phi.params, r_params=r_real.params, test=test,
        spec=spec, rng=np.random.default_rng([config.seed, STAGE_IDS["eval"]]),
        num_prior_samples=config.eval.num_prior_samples))
    save_confusion(cm, "r_real", "real-only R")
    times["eval"] = time.time() - t
    writer.scalars(int(fes.step), {k: v for k, v in summary.items() if isinstance(v, float)}, "eval")

  if "joint" in config.stages:
    t = time.time()
    joint = run_stage(
        "joint",
        create=lambda: state_lib.create_joint_states(models, config, stage_key(config.seed, "joint"),
                                                     fes),
        step_fn=functools.partial(steps.joint_step, models=models, cfg1=config.stage1,
                                  cfg2=config.stage2),
        batches=batches("joint"), num_steps=config.stage2.steps,
        rng=stage_key(config.seed, "joint"),
        show=("r/ce_real", "r/ce_syn", "r/intra", "r/acc_real", "r/acc_syn"), **common)
    times["joint"] = time.time() - t
    joint_scores, cm = evaluation.recognition_scores(ev, joint.r.params, test, "eval/joint")
    summary.update(joint_scores)
    save_confusion(cm, "joint", "joint R")
    writer.scalars(int(joint.step), joint_scores, "eval")

  times["total"] = time.time() - t_start
  summary["wall_seconds"] = times
  summary["paths"] = paths
  summary["class_names"] = list(train.class_names)
  paths["summary"] = os.path.join(workdir, "summary.json")
  _save_json(summary, paths["summary"])
  writer.close()
  return summary


def format_report(summary: dict[str, Any]) -> str:
  """A human-readable end-of-run report."""
  lines = ["", "jfesgan run finished.", ""]
  for k, v in summary["paths"].items():
    lines.append(f"  {k:18s} {v}")
  lines.append("")
  for k, v in sorted(summary.items()):
    if isinstance(v, float):
      lines.append(f"  {k:28s} {v:.4f}")
  if "eval/joint/acc" in summary:
    lines.append("")
    lines.append(f"  held-out accuracy: joint R {summary['eval/joint/acc']:.4f} vs real-only R "
                 f"{summary['eval/real/acc']:.4f} (same number of steps)")
  lines.append("")
  lines.append("  wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["wall_seconds"].items()))
  return "\n".join(lines)
