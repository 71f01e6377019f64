"""Orchestration: the stages of the plan (:mod:`jfesgan.stages`) in turn, then the run's summary.

No maths here (losses live in :mod:`jfesgan.losses`, updates in :mod:`jfesgan.steps`) and no
stage by name (the plan says what each stage creates, steps, shows and scores).

Resume order: a stage whose final step is saved in the workdir is restored and skipped; one with
a partial checkpoint continues from it with exactly the batches it would have seen (batches are a
pure function of the step); a stage with no checkpoint in the workdir may start from the
*finished* stage of another workdir (``start_from``, whose config must agree on everything that
stage depends on), else it trains from scratch.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import tqdm
from absl import logging

from jfesgan import ahead as compile_ahead
from jfesgan import parallel, stages, validate
from jfesgan.data import pipeline
from jfesgan.evaluation.summary import RunSummary
from jfesgan.models import build_models
from jfesgan.run import checkpointing, faults, host, metrics
from jfesgan.run import workdir as workdir_lib


def run_stage(stage: stages.Stage, ctx: stages.Context, finished: Mapping[str, Any], *,
              mesh, workdir: str, writer: metrics.MetricWriter, start_from: str | None = None,
              on_step: Callable[[int, Any], None] | None = None,
              preemption: faults.Preemption | None = None,
              accept_config_changes: bool = False,
              ahead: compile_ahead.CompileAhead | None = None) -> tuple[Any, float]:
  """Trains ``stage`` up to its step count; returns its final state and its wall time (s).

  The state is restored from the finished stage in ``start_from`` (a stage that
  :func:`jfesgan.run.workdir.start_from_stages` took from there), or from the workdir's latest
  checkpoint of the stage, or created from ``finished`` (the states of the stages it needs).  Steps run
  ``config.steps_per_call`` at a time (one jitted ``lax.scan`` over the device-resident dataset,
  :func:`jfesgan.parallel.jit_loop`; 1 = one jitted step per call), in chunks that end at every
  multiple of ``config.log_every`` (metrics logged), ``config.checkpoint_every`` (state saved)
  and, for a stage that draws samples, ``config.sample_every``; ``on_step(step, state)`` runs
  after each chunk.  With ``ahead`` the first step waits for its program to be compiled there
  (:mod:`jfesgan.ahead`) instead of compiling it a second time.

  Faults (:mod:`jfesgan.run.faults`): a non-finite metric stops the stage before anything non-finite
  is saved (:class:`~jfesgan.run.faults.NonFiniteError`); a signal caught by ``preemption`` saves the
  current step and stops the run (:class:`~jfesgan.run.faults.Stopped`).  Each save stores the
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
  ours = workdir_lib.as_dict(config)
  workdir_lib.check_resume(stage, workdir, ours, accept_config_changes)
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
  if ahead is not None:
    waited = ahead.wait(stage.name)
    if waited > 0.5:
      logging.info("stage %s: waited %.1f s for its step compiled ahead", stage.name, waited)
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
      state, values = loop(state, arrays, rows["index"], rows["flip"], np.asarray(plan, np.int32),
                            rng, **static)
    else:
      batch = parallel.shard_batch(batches.at(step), mesh)
      state, values = step_fn(state, batch, jax.random.fold_in(rng, step), **static)
    if step == start:
      host.release_free_memory()  # the compiler's scratch, once the step has compiled
    bar.update(done - step)
    step = done
    guard.update(values, done)
    if done % config.log_every == 0 or done == num_steps:
      guard.check()
      values = metrics.to_floats(values)
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


def train_and_evaluate(config, workdir: str, *, start_from: str | None = None,
                       accept_config_changes: bool = False) -> dict[str, Any]:
  """Runs the configured stages in ``workdir`` (resuming what is there) and evaluates.

  ``start_from``: another workdir whose finished stages this run starts from instead of training
  them again (the ablation rows share one stage 0-1 this way).  Returns a summary: scores,
  confusion matrices, wall times and the paths of everything written.

  The workdir is locked for the run (:class:`jfesgan.run.faults.WorkdirLock`); SIGTERM and Ctrl-C
  save the running stage's step and raise :class:`jfesgan.run.faults.Stopped`.
  """
  t_start = time.time()
  workdir = os.path.abspath(workdir)
  plan = stages.select(config)
  validate.validate(config, plan)
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
    taken, not_taken = workdir_lib.start_from_stages(config, plan, workdir, start_from,
                                                     accept=accept_config_changes)
    logging.info("stages %s start from %s", list(taken), start_from)
    for name, why in not_taken.items():
      logging.warning("stage %s does not start from %s: %s", name, start_from, why)
  # Every stage this run would resume, and the data, are checked before anything is written.
  ours = workdir_lib.as_dict(config)
  for stage in plan:
    if stage.name not in taken:
      workdir_lib.check_resume(stage, workdir, ours, accept_config_changes)
  train, test = pipeline.train_test_across_hosts(config.data)
  logging.info("data: %d train images (%d subjects), %d test images (%d subjects), classes %s",
               len(train), len(np.unique(train.subject)), len(test), len(np.unique(test.subject)),
               train.class_names)
  validate.check_data(config, plan, train)
  writer = metrics.MetricWriter(workdir)
  writer.drop_after("eval", -1)  # every run evaluates every stage again: its records replace these
  if writer.active:
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
  writer.json(config.to_dict(), os.path.join(workdir, "config.json"))
  workdir_lib.warn_if_unreadable(os.path.join(workdir, "summary.json"))
  models = build_models(config, train.num_classes, num_subjects=len(np.unique(train.subject)))
  ctx = stages.Context(config=config, models=models, train=train)
  run_summary = RunSummary(config, models, test, writer, workdir)
  times: dict[str, float] = {}
  finished: dict[str, Any] = {}
  ahead = None
  if compile_ahead.enabled(config):
    # (A stage finished by an earlier run of this workdir finds its program in the cache.)
    todo = [s.name for s in plan if s.name not in taken]
    ahead = compile_ahead.CompileAhead(plan, todo, ctx, mesh) if todo else None
  try:
    for stage in plan:
      state, times[stage.name] = run_stage(
          stage, ctx, finished, mesh=mesh, workdir=workdir, writer=writer,
          start_from=start_from if stage.name in taken else None,
          on_step=run_summary.grids_during(stage), preemption=preemption,
          accept_config_changes=accept_config_changes, ahead=ahead)
      finished[stage.name] = state
      t = time.time()
      run_summary.stage_done(stage, state, finished)
      times["eval"] = times.get("eval", 0.0) + time.time() - t
  finally:
    if ahead is not None:
      ahead.close()
  times["total"] = time.time() - t_start
  summary = run_summary.finish(times, {name: start_from for name in taken})
  writer.close()
  return summary
