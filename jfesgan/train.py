"""Orchestration: the stages of the plan (:mod:`jfesgan.stages`) in turn, then the report.

No maths here (losses live in :mod:`jfesgan.losses`, updates in :mod:`jfesgan.steps`) and no
stage by name (the plan says what each stage creates, steps, shows and scores).

Resume order: a stage whose final step is saved in the workdir is restored and skipped; one with
a partial checkpoint continues from it with exactly the batches it would have seen (batches are a
pure function of the step); a stage with no checkpoint in the workdir may start from the
*finished* stage of another workdir (``start_from``, whose config must agree on everything that
stage depends on), else it trains from scratch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np
import tqdm
from absl import logging

from jfesgan import checkpointing, evaluation, metrics as metrics_lib, parallel, stages, visualize
from jfesgan import faults, host
from jfesgan import report as report_lib
from jfesgan import judge as judge_lib
from jfesgan.data import pipeline
from jfesgan.steps import GAN_LOSSES
from jfesgan import models as models_lib
from jfesgan.models import build_models


def run_stage(stage: stages.Stage, ctx: stages.Context, finished: Mapping[str, Any], *,
              mesh, workdir: str, writer: metrics_lib.MetricWriter,
              start_from: str | None = None,
              on_step: Callable[[int, Any], None] | None = None,
              preemption: faults.Preemption | None = None,
              accept_config_changes: bool = False) -> tuple[Any, float]:
  """Trains ``stage`` up to its step count; returns its final state and its wall time (s).

  The state is restored from the finished stage in ``start_from`` (a stage that
  :func:`start_from_stages` took from there), or from the workdir's latest checkpoint of the
  stage, or created from ``finished`` (the states of the stages it needs).  Steps run
  ``config.steps_per_call`` at a time (one jitted ``lax.scan`` over the device-resident dataset,
  :func:`jfesgan.parallel.jit_loop`; 1 = one jitted step per call), in chunks that end at every
  multiple of ``config.log_every`` (metrics logged), ``config.checkpoint_every`` (state saved)
  and, for a stage that draws samples, ``config.sample_every``; ``on_step(step, state)`` runs
  after each chunk.

  Faults (:mod:`jfesgan.faults`): a non-finite metric stops the stage before anything non-finite
  is saved (:class:`~jfesgan.faults.NonFiniteError`); a signal caught by ``preemption`` saves the
  current step and stops the run (:class:`~jfesgan.faults.Stopped`).  Each save stores the
  config beside the checkpoints; resuming under a config that differs in a field the stage
  depends on (other than its own ``steps``) is refused unless ``accept_config_changes``.
  """
  t0 = time.time()
  config = ctx.config
  num_steps = stage.steps(config)
  create = lambda: stage.create(ctx, finished)
  if start_from is not None:  # finished there (start_from_stages): restored, nothing written here
    source = checkpointing.StageCheckpointer(start_from, stage.name)
    state = source.restore_or_create(create, parallel.replicated(mesh), require=True)
    source.close()
    logging.info("stage %s: restored from %s at step %d", stage.name, source.directory,
                 int(jax.device_get(state.step)))
    return state, time.time() - t0
  ckpt = checkpointing.StageCheckpointer(workdir, stage.name)
  ours = json.loads(json.dumps(config.to_dict()))
  _check_resume(stage, workdir, ours, accept_config_changes)
  state = ckpt.restore_or_create(create, parallel.replicated(mesh))
  start = int(jax.device_get(state.step))
  if start > num_steps:
    ckpt.close()
    raise ValueError(f"stage {stage.name}: {ckpt.directory} holds step {start}, past "
                     f"config.{stage.name}.steps={num_steps}; set {stage.name}.steps >= {start} or "
                     "use another --workdir (a longer-trained model is not reported as a shorter one)")
  if start == num_steps:
    logging.info("stage %s: restored at step %d, already done", stage.name, start)
    ckpt.close()
    return state, time.time() - t0
  if start:
    logging.info("stage %s: resuming from step %d", stage.name, start)
    writer.drop_after(stage.name, start)  # records of steps that will run again
  batches = pipeline.Batches(ctx.train, config.batch_size, seed=stage.batch_seed(config.seed),
                             hflip=config.data.hflip, subject_index=stage.label_key == "subject")
  rng = stage.key(config.seed)
  per_call = config.steps_per_call
  if per_call > 1:  # K steps per call, the dataset resident on the devices
    loop = parallel.jit_loop(stage.step(ctx), pipeline.gather_batch, mesh,
                             static_argnames=stage.static_argnames)
    arrays = parallel.replicate(batches.arrays(), mesh)
  else:
    step_fn = parallel.jit_step(stage.step(ctx), mesh, static_argnames=stage.static_argnames)
  events = [config.log_every, config.checkpoint_every]
  if stage.generator is not None:
    events.append(config.sample_every)
  # In a log file (no terminal) a line every 30 s is plenty.
  bar = tqdm.tqdm(total=num_steps, initial=start, desc=f"{stage.name:>7s}",
                  mininterval=1.0 if sys.stderr.isatty() else 30.0,
                  dynamic_ncols=True, disable=not writer.active)
  guard = faults.FiniteGuard(stage.name)
  step = start
  while step < num_steps:
    static = stage.static(config, step) if stage.static else {}
    done = _chunk_end(step, num_steps, per_call, events,
                      lambda s: (stage.static(config, s) if stage.static else {}) == static)
    if per_call > 1:
      plan = list(range(step, done))
      index = np.stack([batches.indices(s) for s in plan], axis=1)
      flip = np.stack([batches.flips(s) for s in plan], axis=1)
      rows = parallel.shard_batch({"index": index, "flip": flip}, mesh)
      state, metrics = loop(state, arrays, rows["index"], rows["flip"], np.asarray(plan, np.int32),
                            rng, **static)
    else:
      batch = parallel.shard_batch(batches.at(step), mesh)
      state, metrics = step_fn(state, batch, jax.random.fold_in(rng, step), **static)
    if step == start:
      host.release_free_memory()  # the compiler's scratch, once the step has compiled
    bar.update(done - step)
    step = done
    guard.update(metrics, done)
    if done % config.log_every == 0 or done == num_steps:
      guard.check()
      values = metrics_lib.to_floats(metrics)
      writer.scalars(done, values, stage.name)
      keys = stage.show or [k for k in values if k.split("/", 1)[-1] in ("loss", "acc")]
      bar.set_postfix({k: f"{values[k]:.3g}" for k in keys if k in values}, refresh=False)
    if on_step is not None:
      on_step(done, state)
    saved = done % config.checkpoint_every == 0 or done == num_steps
    if saved:
      guard.check()
      ckpt.save(done, state, ours)
    if preemption is not None and preemption.requested_at(done) and done < num_steps:
      guard.check()
      if not saved:
        ckpt.save(done, state, ours)
      bar.close()
      writer.flush()
      ckpt.close()
      raise faults.Stopped(
          f"stage {stage.name}: stopped by {preemption.signal_name} at step {done} of {num_steps}; "
          f"saved {ckpt.directory}/{done}. Re-run the same command to resume.", preemption.status)
  bar.close()
  writer.flush()
  ckpt.close()
  return state, time.time() - t0


def _check_resume(stage: stages.Stage, workdir: str, ours: dict, accept: bool) -> None:
  """Refuses to resume ``stage`` from checkpoints in ``workdir`` saved under another configuration
  of the fields it depends on (its own step count may change: a stage can be extended).  Creates
  nothing."""
  directory = os.path.join(workdir, "checkpoints", stage.name)
  path = os.path.join(directory, "config.json")
  if not os.path.isfile(path) or checkpointing.latest_step(workdir, stage.name) is None:
    return
  with open(path) as f:
    saved = json.load(f)
  diff = [d for d in diff_sections(saved, ours, stages.config_sections(stage.name))
          if d != f"{stage.name}.steps"]
  if not diff:
    return
  if accept:
    logging.warning("stage %s: resuming under a changed configuration (%s), as asked", stage.name,
                    diff[:8])
    return
  raise ValueError(f"stage {stage.name}: {directory} was saved under another configuration "
                   f"(differs in {diff[:8]}{' ...' if len(diff) > 8 else ''}); use another "
                   "--workdir, or --accept_config_changes to resume anyway")


def _chunk_end(step: int, num_steps: int, per_call: int, events: list[int],
               same_variant: Callable[[int], bool]) -> int:
  """The end of the chunk of steps run in one call from ``step``: at most ``per_call`` steps,
  stopping at the next multiple of any of ``events`` (logging, checkpoints, samples), at the
  stage's end, and before the first step of another variant."""
  end = min(num_steps, step + per_call)
  for every in events:
    end = min(end, (step // every + 1) * every)
  for s in range(step + 1, end):
    if not same_variant(s):
      return s
  return end


def _validate(config, plan: tuple[stages.Stage, ...]) -> None:
  """Checks the config up front, before any dataset is built or network trained; each error
  names the field's full path."""
  from jfesgan import augment, losses  # pylint: disable=g-import-not-at-top
  from jfesgan.models.common import check_resolution  # pylint: disable=g-import-not-at-top
  problems = []

  def need(ok: bool, field: str, value, rule: str) -> None:
    if not ok:
      problems.append(f"config.{field}={value!r} {rule}")

  for stage in plan:
    need(stage.steps(config) >= 0, f"{stage.name}.steps", stage.steps(config), "must be >= 0")
  for field in ("batch_size", "log_every", "checkpoint_every", "sample_every", "steps_per_call"):
    need(int(config[field]) >= 1, field, config[field], "must be >= 1")
  need(config.data.channels in (1, 3), "data.channels", config.data.channels, "must be 1 or 3")
  try:
    check_resolution(config.data.image_size, config.model.num_down)
  except ValueError as e:
    problems.append(str(e))
  for path, section in _optimizer_sections(config):
    need(section.name in ("adam", "sgd"), f"{path}.name", section.name, "must be 'adam' or 'sgd'")
    need(section.schedule in ("constant", "cosine"), f"{path}.schedule", section.schedule,
         "must be 'constant' or 'cosine'")
    need(section.lr > 0, f"{path}.lr", section.lr, "must be > 0")
    need(section.weight_decay >= 0, f"{path}.weight_decay", section.weight_decay, "must be >= 0")
    need(section.warmup >= 0, f"{path}.warmup", section.warmup, "must be >= 0")
    need(section.grad_clip >= 0, f"{path}.grad_clip", section.grad_clip, "must be >= 0")
  need(config.model.get("dtype", "float32") in models_lib.COMPUTE_DTYPES, "model.dtype",
       config.model.get("dtype"), f"must be one of {tuple(models_lib.COMPUTE_DTYPES)}")
  need(config.model.g_width >= 0, "model.g_width", config.model.g_width,
       "must be >= 0 (0: model.width)")
  need(config.model.g_depth >= 0, "model.g_depth", config.model.g_depth, "must be >= 0")
  need(config.model.g_upsample in models_lib.UPSAMPLERS, "model.g_upsample",
       config.model.g_upsample, f"must be one of {tuple(models_lib.UPSAMPLERS)}")
  need(config.fesgan.gan_loss in GAN_LOSSES, "fesgan.gan_loss", config.fesgan.gan_loss,
       f"must be one of {GAN_LOSSES}")
  need(config.fesgan.n_critic >= 1, "fesgan.n_critic", config.fesgan.n_critic, "must be >= 1")
  need(0 <= config.fesgan.ema_decay < 1, "fesgan.ema_decay", config.fesgan.ema_decay,
       "must be in [0, 1)")
  need(config.joint.intra_mode in losses.INTRA_CLASS_MODES, "joint.intra_mode",
       config.joint.intra_mode, f"must be one of {losses.INTRA_CLASS_MODES}")
  need(config.real.get("intra_weight", 0.0) >= 0, "real.intra_weight",
       config.real.get("intra_weight"), "must be >= 0")
  need(config.joint.syn_ratio > 0, "joint.syn_ratio", config.joint.syn_ratio, "must be > 0")
  need(0 <= config.joint.centre_decay < 1, "joint.centre_decay", config.joint.centre_decay,
       "must be in [0, 1)")
  for name, field in (("real", "augment"), ("joint", "augment"), ("fesgan", "dimg_augment")):
    try:
      augment.Augment.from_config(config[name][field])
    except ValueError as e:
      problems.append(f"config.{name}.{field}{str(e).removeprefix('augment')}")
  need(config.data.get("heldout", "test") in pipeline.HELDOUT, "data.heldout",
       config.data.get("heldout"), f"must be one of {pipeline.HELDOUT}")
  need(config.data.get("protocol", "folds") in pipeline.PROTOCOLS, "data.protocol",
       config.data.get("protocol"), f"must be one of {pipeline.PROTOCOLS}")
  if problems:
    raise ValueError("invalid configuration:\n  " + "\n  ".join(problems))


def _optimizer_sections(config, prefix: str = ""):
  """(path, section) of every optimiser section (one with ``name`` and ``lr``) in ``config``."""
  for key in config.keys():
    value = config[key]
    if hasattr(value, "keys"):
      path = f"{prefix}{key}"
      if "lr" in value and "name" in value:
        yield path, value
      else:
        yield from _optimizer_sections(value, path + ".")


def _load_data(config) -> tuple[pipeline.ArrayDataset, pipeline.ArrayDataset]:
  """The run's (train, held-out) data; with several processes, process 0 prepares the dataset
  (TFDS writes it once) while the others wait, then they read it."""
  if jax.process_count() == 1:
    return pipeline.train_test(config.data)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    data = pipeline.train_test(config.data)
    multihost_utils.sync_global_devices("jfesgan: dataset prepared")
    return data
  multihost_utils.sync_global_devices("jfesgan: dataset prepared")
  return pipeline.train_test(config.data)


def start_from_stages(config, plan: tuple[stages.Stage, ...], workdir: str,
                      start_from: str) -> tuple[tuple[str, ...], dict[str, str]]:
  """Which stages of ``plan`` start from the finished checkpoints of workdir ``start_from``.

  A stage is taken from there when ``workdir`` has no checkpoint of it and ``start_from`` has its
  final step, trained under the same config fields the stage depends on
  (:func:`jfesgan.stages.config_sections`).  Returns the names taken and, for every other stage
  that ``start_from`` has, why it is not taken (it is trained here instead; nothing is mixed).
  """
  path = os.path.join(start_from, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"start_from={start_from!r} has no config.json: not a jfesgan workdir")
  with open(path) as f:
    theirs = json.load(f)
  ours = json.loads(json.dumps(config.to_dict()))
  taken, not_taken = [], {}
  for stage in plan:
    step = checkpointing.latest_step(start_from, stage.name)
    if step is None:
      continue
    if checkpointing.latest_step(workdir, stage.name) is not None:
      not_taken[stage.name] = f"{workdir} has a checkpoint of its own"
      continue
    diff = diff_sections(theirs, ours, stages.config_sections(stage.name))
    if diff:
      not_taken[stage.name] = f"trained there with another configuration (differs in {diff[:8]})"
    elif step != stage.steps(config):
      not_taken[stage.name] = f"not finished there (step {step} of {stage.steps(config)})"
    else:
      taken.append(stage.name)
  return tuple(taken), not_taken


_ABSENT = object()


def _lookup(tree, path: str):
  for part in path.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return _ABSENT
    tree = tree[part]
  return tree


def _default_config() -> dict:
  from configs import default  # pylint: disable=g-import-not-at-top
  return json.loads(json.dumps(default.get_config().to_dict()))


def diff_sections(a: dict, b: dict, keys, defaults: dict | None = None) -> list[str]:
  """Sorted dotted paths where two config dicts differ, within the top-level fields ``keys``.

  ``a`` is the saved (older) side: a field it lacks that ``b`` holds at its value in ``defaults``
  (``configs/default.py``'s, as JSON) is a field added to the code since ``a`` was saved and left at
  its default, which trains what ``a`` trained: not a difference."""
  defaults = _default_config() if defaults is None else defaults
  paths = (d for k in keys for d in diff_paths(a.get(k), b.get(k), f"{k}."))
  return sorted(d for d in paths
                if not (_lookup(a, d) is _ABSENT and _lookup(defaults, d) is not _ABSENT
                        and _lookup(b, d) == _lookup(defaults, d)))


def diff_paths(a, b, prefix: str = "") -> list[str]:
  """Dotted paths where two nested dicts differ."""
  if not (isinstance(a, dict) and isinstance(b, dict)):
    return [] if a == b else [prefix.rstrip(".")]
  out = []
  for k in set(a) | set(b):
    out += diff_paths(a.get(k), b.get(k), f"{prefix}{k}.")
  return out


def train_and_evaluate(config, workdir: str, *, start_from: str | None = None,
                       accept_config_changes: bool = False) -> dict[str, Any]:
  """Runs the configured stages in ``workdir`` (resuming what is there) and evaluates.

  ``start_from``: another workdir whose finished stages this run starts from instead of training
  them again (the ablation rows share one stage 0-1 this way).  Returns a summary: scores,
  confusion matrices, wall times and the paths of everything written.

  The workdir is locked for the run (:class:`jfesgan.faults.WorkdirLock`); SIGTERM and Ctrl-C
  save the running stage's step and raise :class:`jfesgan.faults.Stopped`.
  """
  t_start = time.time()
  workdir = os.path.abspath(workdir)
  plan = stages.select(config)
  _validate(config, plan)
  with faults.WorkdirLock(workdir) as lock, faults.Preemption() as preemption:
    if lock.taken_over:
      logging.warning("took over the lock of %s from a run that is gone (host %s, pid %s)",
                      workdir, lock.taken_over.get("host"), lock.taken_over.get("pid"))
    return _train_and_evaluate(config, workdir, plan, start_from, preemption, t_start,
                               accept_config_changes)


def _train_and_evaluate(config, workdir: str, plan, start_from: str | None,
                        preemption: faults.Preemption, t_start: float,
                        accept_config_changes: bool) -> dict[str, Any]:
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  logging.info("devices: %d x %s (%d processes); mesh %s; stages %s", jax.device_count(),
               jax.devices()[0].device_kind, jax.process_count(), dict(mesh.shape),
               [s.name for s in plan])
  taken = ()
  if start_from is not None:
    start_from = os.path.abspath(start_from)
    taken, not_taken = start_from_stages(config, plan, workdir, start_from)
    logging.info("stages %s start from %s", list(taken), start_from)
    for name, why in not_taken.items():
      logging.warning("stage %s does not start from %s: %s", name, start_from, why)
  # Every stage this run would resume is checked before anything trains.
  ours = json.loads(json.dumps(config.to_dict()))
  for stage in plan:
    if stage.name not in taken:
      _check_resume(stage, workdir, ours, accept_config_changes)
  writer = metrics_lib.MetricWriter(workdir)
  writer.drop_after("eval", -1)  # every run evaluates every stage again: its records replace these
  if writer.active:
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
  writer.json(config.to_dict(), os.path.join(workdir, "config.json"))

  train, test = _load_data(config)
  logging.info("data: %d train images (%d subjects), %d test images (%d subjects), classes %s",
               len(train), len(np.unique(train.subject)), len(test), len(np.unique(test.subject)),
               train.class_names)
  learns_subjects = any(s.label_key == "subject" and s.steps(config) > 0 for s in plan)
  if (train.subject < 0).any() and (learns_subjects or config.fesgan.identity_weight > 0):
    raise ValueError(f"{config.data.name} has no subject ids, so there is no identity network to "
                     "train: set phi.steps=0 and fesgan.identity_weight=0 (configs/fer2013.py)")
  if config.batch_size > len(train):
    raise ValueError(f"config.batch_size={config.batch_size} is larger than the training set "
                     f"({len(train)} images of {config.data.name})")
  models = build_models(config, train.num_classes, num_subjects=len(np.unique(train.subject)))
  ctx = stages.Context(config=config, models=models, train=train)
  report = Report(config, models, test, writer, workdir)
  times: dict[str, float] = {}
  finished: dict[str, Any] = {}
  for stage in plan:
    on_step = None
    if stage.generator is not None:
      last = stage.steps(config)
      # Periodic grids during training; the last one is drawn once, after the stage.
      on_step = lambda step, s, stage=stage, last=last: (
          report.grid(stage, step, s) if step % config.sample_every == 0 and step < last else None)
    state, times[stage.name] = run_stage(
        stage, ctx, finished, mesh=mesh, workdir=workdir, writer=writer,
        start_from=start_from if stage.name in taken else None, on_step=on_step,
        preemption=preemption, accept_config_changes=accept_config_changes)
    finished[stage.name] = state
    t = time.time()
    report.stage_done(stage, state, finished)
    times["eval"] = times.get("eval", 0.0) + time.time() - t

  times["total"] = time.time() - t_start
  summary = report.summary
  summary["wall_seconds"] = times
  if taken:
    summary["start_from"] = {name: start_from for name in taken}
  report.paths["summary"] = os.path.join(workdir, "summary.json")
  report.paths["report"] = os.path.join(workdir, "report.html")
  writer.json(summary, report.paths["summary"])
  if writer.active:
    report_lib.write(workdir)
  writer.close()
  return summary


class Report:
  """Evaluates each finished stage on the held-out data and collects the run's summary: the
  scores of every recogniser (``eval/<stage>/...``, confusion matrices), the synthesis scores once
  the generator and its judge are trained, sample grids of every generator, and the paths."""

  def __init__(self, config, models, test: pipeline.ArrayDataset,
               writer: metrics_lib.MetricWriter, workdir: str):
    self.config, self.models, self.test, self.writer, self.workdir = (config, models, test,
                                                                      writer, workdir)
    self.ev = evaluation.Evaluator(models, config.eval.batch_size)
    # The independent judge of synthesis: loaded here, by the evaluation alone (no stage sees it).
    self.judge = judge_lib.load(config.eval.judge) if config.eval.judge else None
    self.paths = {"workdir": workdir, "metrics": writer.jsonl_path, "tensorboard": writer.tb_dir,
                  "checkpoints": os.path.join(workdir, "checkpoints")}
    self.summary: dict[str, Any] = {"confusion": {}, "paths": self.paths,
                                    "class_names": list(test.class_names)}

  def grid(self, stage: stages.Stage, step: int, state) -> None:
    """Draws the stage's generator: held-out people with every expression, and new people."""
    g = evaluation.grid_contents(self.ev, stage.generator(state), self.test,
                                 self.config.eval.grid_rows, self.config.seed,
                                 self.models.latent_dim)
    img = visualize.synthesis_grid(g["inputs"], g["recon"], g["translations"], g["prior"],
                                   self.test.class_names)
    self.paths["samples"] = self.writer.png(
        img, os.path.join(self.workdir, "samples", f"{stage.name}_{step:06d}.png"))
    self.writer.image(step, f"samples/{stage.name}", img)

  def stage_done(self, stage: stages.Stage, state, finished: Mapping[str, Any]) -> None:
    """Everything the plan says to show or score once ``stage`` is finished."""
    step = int(jax.device_get(state.step))
    names = list(self.test.class_names)
    if stage.generator is not None:
      self.grid(stage, step, state)
      if self.judge is not None:
        scores = evaluation.judge_synthesis(
            self.ev, self.judge, stage.generator(state), self.test,
            rng=np.random.default_rng([self.config.seed, stages.EVAL_STREAM]),
            num_prior_samples=self.config.eval.num_prior_samples, prefix=f"judge/{stage.name}")
        self.summary.update(scores)
        self.writer.scalars(step, scores, "eval")
    if stage.recogniser is not None:
      scores, cm = evaluation.recognition_scores(self.ev, stage.recogniser(state), self.test,
                                                 f"eval/{stage.name}")
      self.summary.update(scores)
      self.summary["confusion"][stage.name] = cm.tolist()
      base = os.path.join(self.workdir, f"confusion_{stage.name}")
      self.writer.json({"class_names": names, "rows_true_columns_predicted": cm.tolist(),
                        "per_class_accuracy": dict(zip(names, evaluation.per_class_accuracy(cm)
                                                       .tolist())),
                        "accuracy": float(np.trace(cm) / max(cm.sum(), 1))}, base + ".json")
      self.paths[f"confusion_{stage.name}"] = self.writer.png(
          visualize.confusion_image(cm, names, stage.title), base + ".png")
      self.writer.scalars(step, scores, "eval")
    synth = stages.synthesis_inputs(finished)
    if synth is not None and "synth/id_sim" not in self.summary:
      scores = evaluation.synthesis_scores(
          self.ev, test=self.test, rng=np.random.default_rng([self.config.seed, stages.EVAL_STREAM]),
          num_prior_samples=self.config.eval.num_prior_samples, **synth)
      self.summary.update(scores)
      self.writer.scalars(step, scores, "eval")


def format_report(summary: dict[str, Any]) -> str:
  """A human-readable end-of-run report."""
  lines = ["", "jfesgan run finished.", ""]
  for k, v in summary["paths"].items():
    lines.append(f"  {k:18s} {v}")
  lines.append("")
  for k, v in sorted(summary.items()):
    if isinstance(v, float):
      lines.append(f"  {k:28s} {v:.4f}")
  if "eval/joint/acc" in summary and "eval/real/acc" in summary:
    lines.append("")
    lines.append(f"  held-out accuracy: joint R {summary['eval/joint/acc']:.4f} vs real-only R "
                 f"{summary['eval/real/acc']:.4f}")
  lines.append("")
  lines.append("  wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["wall_seconds"].items()))
  return "\n".join(lines)
