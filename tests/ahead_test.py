"""Compiling the stages' steps ahead: the stage's own call then loads the program, never compiles
it again, and nothing it computes changes."""

import logging

import jax
import numpy as np
import pytest

from jfesgan import ahead, parallel, stages
from jfesgan.data import pipeline
from jfesgan.models import build_models


def _ctx(tiny_config, tmp_path):
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(tmp_path / "tfds")
  # A shape no other test compiles, so that the program cannot be in the session's cache already.
  cfg.model.embed_dim = 24
  data, _ = pipeline.train_test(cfg.data)
  models = build_models(cfg, data.num_classes, num_subjects=len(np.unique(data.subject)))
  return cfg, stages.Context(config=cfg, models=models, train=data)


@pytest.mark.slow
def test_a_step_compiled_ahead_is_loaded_not_compiled_again(tiny_config, tmp_path, caplog):
  cfg, ctx = _ctx(tiny_config, tmp_path)
  cfg.compile_ahead = True
  assert ahead.enabled(cfg)  # the test session keeps a persistent cache (conftest)
  mesh = parallel.make_mesh()
  plan = [stages.PHI, stages.BY_NAME["real"]]
  compiler = ahead.CompileAhead(plan, ["real"], ctx, mesh)
  assert compiler.wait("phi") == 0.0  # not asked for: nothing to wait for
  compiler.wait("real")
  assert not compiler.failed and set(compiler.seconds) == {"real"}

  stage = stages.BY_NAME["real"]
  state = parallel.replicate(stage.create(ctx, {}), mesh)
  batches = pipeline.Batches(ctx.train, cfg.batch_size, seed=0, hflip=cfg.data.hflip)
  batch = parallel.shard_batch(batches.at(0), mesh)
  step = parallel.jit_step(stage.step(ctx), mesh, static_argnames=stage.static_argnames)
  jax.config.update("jax_explain_cache_misses", True)
  try:
    with caplog.at_level(logging.WARNING, logger="jax._src.compiler"):
      new, metrics = step(state, batch, jax.random.fold_in(stage.key(cfg.seed), 0))
      jax.block_until_ready(metrics)
  finally:
    jax.config.update("jax_explain_cache_misses", False)
  misses = [r.getMessage() for r in caplog.records if "CACHE MISS" in r.getMessage()]
  assert not [m for m in misses if "jit_positional" in m], misses
  assert int(new.step) == 1 and np.isfinite(float(metrics["real/loss"]))


@pytest.mark.slow
def test_every_stage_lowered_ahead_is_the_program_the_loop_runs(tiny_config, tmp_path):
  # The persistent cache hands a program over only if the module's text is the same: lowered from
  # the placed shapes of the states a stage starts from, and from those states themselves (created,
  # replicated over the mesh; the batch sharded; the key as the loop folds it), for every stage.
  cfg, ctx = _ctx(tiny_config, tmp_path)
  mesh = parallel.make_mesh()
  assert mesh.size > 1  # the fake devices of the test session: placement matters
  made, shapes = {}, {}
  for stage in stages.PLAN:
    need = {m: made[m] for m in stage.needs}
    made[stage.name] = parallel.replicate(stage.create(ctx, need), mesh)
    shapes[stage.name] = jax.eval_shape(lambda fin, stage=stage: stage.create(ctx, fin),
                                        {m: shapes[m] for m in stage.needs})
    step = parallel.jit_step(stage.step(ctx), mesh, static_argnames=stage.static_argnames)
    static = ahead.static_variants(cfg, stage)[0]
    batches = pipeline.Batches(ctx.train, cfg.batch_size, seed=0, hflip=cfg.data.hflip,
                               subject_index=stage.label_key == "subject")
    loop = step.lower(made[stage.name], parallel.shard_batch(batches.at(0), mesh),
                      jax.random.fold_in(stage.key(cfg.seed), 0), **static).as_text()
    state, batch, key = ahead.placed_arguments(shapes[stage.name], ahead.abstract_batch(ctx, stage),
                                               stage, ctx, mesh)
    assert step.lower(state, batch, key, **static).as_text() == loop, stage.name
    # Unplaced shapes lower another program for the GAN stages (the reason for placing them).
    if stage.name == "fesgan":
      assert step.lower(shapes[stage.name], ahead.abstract_batch(ctx, stage), key,
                        **static).as_text() != loop


def test_static_variants_are_the_distinct_ones_over_the_steps(tiny_config):
  cfg = tiny_config.copy_and_resolve_references()
  for stage in stages.PLAN:
    variants = ahead.static_variants(cfg, stage)
    want = {tuple(sorted((stage.static(cfg, s) if stage.static else {}).items()))
            for s in range(stage.steps(cfg))}
    assert {tuple(sorted(v.items())) for v in variants} == want and len(variants) == len(want)


def test_off_by_default_and_with_the_fused_loop(tiny_config):
  cfg = tiny_config.copy_and_resolve_references()
  assert not ahead.enabled(cfg)  # the default (the module's docstring: why)
  cfg.compile_ahead, cfg.steps_per_call = True, 4
  assert not ahead.enabled(cfg)
  cfg.steps_per_call, cfg.compile_ahead = 1, False
  assert not ahead.enabled(cfg)
