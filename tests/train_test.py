"""End to end: the real train_and_evaluate on the tiny config, its outputs, and resuming."""

import json
import os

import numpy as np
import pytest

from jfesgan import checkpointing, train


def _config(tiny_config, data_dir, **stage_steps):
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(data_dir)
  for k, v in stage_steps.items():
    section, field = k.split("__")
    cfg[section][field] = v
  return cfg


def _stage_steps(workdir, stage):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r["step"] for r in map(json.loads, f) if r["stage"] == stage]


@pytest.mark.slow
def test_train_and_evaluate_then_resume(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  cfg = _config(tiny_config, tmp_path / "tfds", stage1__steps=2)
  summary = train.train_and_evaluate(cfg, workdir)

  # Everything the report names exists, and the scores are real numbers in range.
  for key in ("metrics", "tensorboard", "checkpoints", "samples", "summary"):
    assert os.path.exists(summary["paths"][key]), key
  assert os.listdir(summary["paths"]["tensorboard"])
  for key in ("eval/real/acc", "synth/expr_acc_t", "synth/expr_acc_p"):
    assert 0.0 <= summary[key] <= 1.0, key
  for key in ("synth/l1", "synth/psnr", "synth/id_sim", "synth/id_sim_rec", "synth/id_sim_other",
              "synth/l1_copy", "synth/psnr_copy"):
    assert np.isfinite(summary[key]), key
  assert summary["synth/psnr_copy"] > summary["synth/psnr"]  # an untrained G is worse than a copy
  assert _stage_steps(workdir, "fesgan") == [1, 2]
  assert "fesgan" in summary["wall_seconds"]
  report = train.format_report(summary)
  assert summary["paths"]["samples"] in report and "synth/psnr" in report

  # Resume with a longer stage 1: phi is restored (not retrained), fesgan continues at step 3.
  cfg = _config(tiny_config, tmp_path / "tfds", stage1__steps=4)
  train.train_and_evaluate(cfg, workdir)
  assert _stage_steps(workdir, "phi") == [1, 2]
  assert _stage_steps(workdir, "fesgan") == [1, 2, 3, 4]
  assert checkpointing.StageCheckpointer(workdir, "fesgan").latest_step() == 4
  assert os.path.exists(os.path.join(workdir, "samples", "fesgan_000004.png"))


def test_bad_stages_are_named(tiny_config, tmp_path):
  cfg = _config(tiny_config, tmp_path / "tfds")
  cfg.stages = ("phi", "fesgann")
  with pytest.raises(ValueError, match="fesgann"):
    train.train_and_evaluate(cfg, str(tmp_path / "run"))
  cfg.stages = ("fesgan",)
  with pytest.raises(ValueError, match="prefix"):
    train.train_and_evaluate(cfg, str(tmp_path / "run"))


def test_checkpoint_restore_roundtrip(tiny_config, tmp_path):
  import jax
  from jfesgan import parallel, state as state_lib
  from jfesgan.models import build_models
  models = build_models(tiny_config, 7, 4)
  mesh = parallel.make_mesh()
  create = lambda: state_lib.create_phi_state(models, tiny_config, jax.random.key(3))
  ck = checkpointing.StageCheckpointer(str(tmp_path), "phi")
  state = ck.restore_or_create(create, parallel.replicated(mesh))
  state = state.replace(step=state.step + 5)
  ck.save(5, state)
  restored = checkpointing.StageCheckpointer(str(tmp_path), "phi").restore_or_create(
      lambda: state_lib.create_phi_state(models, tiny_config, jax.random.key(99)),
      parallel.replicated(mesh))
  assert int(restored.step) == 5
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(restored.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
