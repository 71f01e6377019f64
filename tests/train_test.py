"""End to end: the real train_and_evaluate on the tiny config, resuming, and starting from the
finished stages of another workdir."""

import json
import os
import shutil

import chex
import jax
import numpy as np
import pytest

from jfesgan import parallel, stages, train
from jfesgan import state as state_lib
from jfesgan.evaluation import judge as judge_lib
from jfesgan.evaluation.restored import RestoredRecogniser
from jfesgan.evaluation.summary import format_summary
from jfesgan.models import build_models
from jfesgan.research import rejudge
from jfesgan.run import checkpointing
from jfesgan.run import workdir as workdir_lib
from jfesgan.run.provenance import params_fingerprint


def _config(tiny_config, data_dir, **fields):
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(data_dir)
  for k, v in fields.items():
    section, field = k.split("__")
    cfg[section][field] = v
  return cfg


def _stage_steps(workdir, stage):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r["step"] for r in map(json.loads, f) if r["stage"] == stage]


def _final_params(workdir, cfg, stage_name):
  """The saved final state of ``stage_name`` in ``workdir``, as host arrays."""
  data, _ = train.pipeline.train_test(cfg.data)
  models = build_models(cfg, data.num_classes, num_subjects=len(np.unique(data.subject)))
  ctx = stages.Context(config=cfg, models=models, train=data)

  def create():  # traced abstractly: the restore target's structure
    done = {}
    for name in stages.lineage(stage_name):
      done[name] = stages.BY_NAME[name].create(ctx, done)
    return done[stage_name]

  ckpt = checkpointing.StageCheckpointer(workdir, stage_name)
  assert ckpt.latest_step() is not None
  try:
    state = ckpt.restore_or_create(create, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  finally:
    ckpt.close()
  return jax.device_get(state)


@pytest.mark.slow
def test_train_and_evaluate_resume_and_start_from(tiny_config, tmp_path):
  base = str(tmp_path / "run")
  cfg = _config(tiny_config, tmp_path / "tfds", fesgan__steps=2)
  summary = train.train_and_evaluate(cfg, base)

  # Everything the report names exists, and the scores are real numbers in range.
  for key in ("metrics", "tensorboard", "checkpoints", "samples", "summary", "confusion_real",
              "confusion_joint", "report"):
    assert os.path.exists(summary["paths"][key]), key
  assert os.listdir(summary["paths"]["tensorboard"])
  with open(summary["paths"]["report"]) as f:
    page = f.read()
  for part in ("eval/joint/acc", "Confusion: the joint recogniser", "samples: fesgan", "samples: joint",
               "Training curves: fesgan", "g/rec", "data:image/png;base64,", "config.json"):
    assert part in page, part
  for key in ("eval/real/acc", "eval/joint/acc", "synth/expr_acc_t", "synth/expr_acc_p"):
    assert 0.0 <= summary[key] <= 1.0, key
  for key in ("synth/l1", "synth/psnr", "synth/id_sim", "synth/id_sim_rec", "synth/id_sim_other",
              "synth/rec_l1", "synth/id_nearest", "synth/id_sim_prior", "synth/id_nearest_pixel",
              "synth/id_nearest_chance",
              "synth/l1_copy", "synth/psnr_copy", "synth/l1_edit", "synth/psnr_edit",
              "synth/l1_denoised", "synth/psnr_denoised", "synth/change_made",
              "synth/id_nearest_edit", "synth/id_nearest_pixel_edit", "synth/id_nearest_truth",
              "synth/id_nearest_pixel_truth"):
    assert np.isfinite(summary[key]), key
  # The ideal edits keep the input's own pixels but where the expression lives: its person.
  assert summary["synth/id_nearest_pixel_edit"] == 1.0
  assert summary["synth/psnr_copy"] > summary["synth/psnr"]  # an untrained G is worse than a copy
  # The ideal edit (the input plus the truth's change) beats copying: it makes the change.
  assert summary["synth/psnr_edit"] > summary["synth/psnr_copy"] + 1.0
  assert summary["synth/l1_edit"] < summary["synth/l1_copy"]
  # The input denoised, expression unchanged, beats copying too: the truth has no noise.
  assert summary["synth/psnr_denoised"] > summary["synth/psnr_copy"]
  # Every held-out image is counted once in each recogniser's confusion matrix.
  test_images = 2 * 7  # 2 held-out subjects x 7 expressions x 1 frame
  assert {k: np.sum(v) for k, v in summary["confusion"].items()} == {"real": test_images,
                                                                      "joint": test_images}
  for name in stages.NAMES:
    assert _stage_steps(base, name) == [1, 2], name
    assert name in summary["wall_seconds"]
  report = format_summary(summary)
  assert summary["paths"]["samples"] in report and "joint R" in report

  # The later stages' checkpoints were trained on the 2-step stage 1: resuming them under a
  # longer one is refused, naming the field.
  cfg = _config(tiny_config, tmp_path / "tfds", fesgan__steps=4)
  with pytest.raises(ValueError, match=r"stage joint: .*differs in \['fesgan.steps'\]"):
    train.train_and_evaluate(cfg, base)
  # Resume with a longer stage 1: phi is restored (not retrained), fesgan continues at step 3.
  cfg.stages = ("phi", "fesgan")
  train.train_and_evaluate(cfg, base)
  assert _stage_steps(base, "phi") == [1, 2]
  assert _stage_steps(base, "fesgan") == [1, 2, 3, 4]
  assert checkpointing.latest_step(base, "fesgan") == 4
  assert os.path.exists(os.path.join(base, "samples", "fesgan_000004.png"))

  # A run that starts from the base's finished stages trains only its own stage ...
  row = str(tmp_path / "row")
  row_cfg = _config(tiny_config, tmp_path / "tfds", fesgan__steps=4, joint__intra_mode="plain")
  row_cfg.stages = ("phi", "fesgan", "joint")
  out = train.train_and_evaluate(row_cfg, row, start_from=base)
  assert out["start_from"] == {"phi": base, "fesgan": base}
  with open(os.path.join(row, "metrics.jsonl")) as f:
    assert {r["stage"] for r in map(json.loads, f)} == {"joint", "eval"}
  assert sorted(os.listdir(os.path.join(row, "checkpoints"))) == ["joint"]

  # The independent judge: a recogniser of another "database" (other faces: data_seed 1), read by
  # the evaluation alone.  The same row with it trains exactly as without it, and is scored by it.
  judge_dir = str(tmp_path / "judge")
  judge_cfg = _config(tiny_config, tmp_path / "tfds_other", data__data_seed=1)
  judge_cfg.stages = ("real",)
  train.train_and_evaluate(judge_cfg, judge_dir)
  judged_cfg = row_cfg.copy_and_resolve_references()
  judged_cfg.eval.judge = judge_dir
  judged = train.train_and_evaluate(judged_cfg, str(tmp_path / "judged"), start_from=base)
  assert judged["eval/joint/acc"] == out["eval/joint/acc"]
  assert judged["confusion"] == out["confusion"]
  for key in ("judge/real_acc", "judge/joint/acc_t", "judge/joint/acc_p"):
    assert 0.0 <= judged[key] <= 1.0, key
  assert not any(k.startswith("judge/") for k in out)
  # The summary names the judge's weights by content: its real-only R's parameters, hashed.
  judge_params = RestoredRecogniser.load(judge_dir, "real").params
  assert judged["judge_fingerprints"] == {"judge": params_fingerprint(judge_params)}
  assert params_fingerprint(jax.tree.map(lambda a: a + 1e-6, judge_params)) != params_fingerprint(
      judge_params)
  mine, theirs = (_final_params(d, judged_cfg, "joint") for d in (str(tmp_path / "judged"), row))
  chex.assert_trees_all_equal(jax.tree.leaves(mine), jax.tree.leaves(theirs))
  # A run trained without the judge, scored by it afterwards (jfesgan.rejudge: g_ema of both
  # generator stages, stage 1's from the workdir the row took it from), gets the same scores.
  judge_scores = {k: v for k, v in judged.items() if k.startswith("judge/")}
  assert rejudge.rejudge(row, judge_dir) == judge_scores
  # Two copies of one judge, read as an ensemble (eval.judge=A,B), read exactly as that judge.
  assert rejudge.rejudge(row, f"{judge_dir},{judge_dir}") == judge_scores
  # A judge of another architecture family (model.r_arch=residual) is read apart, under its own
  # root, beside the trunk family's unchanged scores; the summary says which judge is which.
  res_dir = str(tmp_path / "judge_res")
  res_cfg = judge_cfg.copy_and_resolve_references()
  res_cfg.model.r_arch = "residual"
  train.train_and_evaluate(res_cfg, res_dir)
  alone = rejudge.rejudge(row, res_dir)
  assert set(alone) == {k.replace("judge/", "judge_residual/", 1) for k in judge_scores}
  assert rejudge.rejudge(row, f"{res_dir},{judge_dir}") == {**judge_scores, **alone}
  panel = judge_lib.load(f"{res_dir},{judge_dir}")
  assert judge_lib.provenance(panel)[1] == {"judge_res": "residual", "judge": "trunk"}
  with pytest.raises(ValueError, match="no generator stage"):
    rejudge.rejudge(judge_dir, judge_dir)
  bad = judged_cfg.copy_and_resolve_references()
  bad.eval.judge = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    train.train_and_evaluate(bad, str(tmp_path / "bad"), start_from=base)

  # ... and takes no stage trained under other settings, or not finished (those train here).
  plan = stages.select(row_cfg)
  other = row_cfg.copy_and_resolve_references()
  other.fesgan.adv_weight = 0.5
  taken, why = workdir_lib.start_from_stages(other, plan, str(tmp_path / "other"), base)
  assert taken == ("phi",) and "fesgan.adv_weight" in why["fesgan"]
  assert "joint.intra_mode" in why["joint"]  # the base's own joint stage is another variant
  assert "checkpoint of its own" in workdir_lib.start_from_stages(row_cfg, plan, row, base)[1]["joint"]
  # A source none of whose stages fits (another model.width) is refused, naming the field, since
  # the run would otherwise ignore --start_from; --accept_config_changes trains them here.
  wider = row_cfg.copy_and_resolve_references()
  wider.model.width = 2 * row_cfg.model.width
  with pytest.raises(ValueError, match=r"no stage can start from there.*model\.width"):
    workdir_lib.start_from_stages(wider, plan, str(tmp_path / "wider"), base)
  taken, why = workdir_lib.start_from_stages(wider, plan, str(tmp_path / "wider"), base, accept=True)
  assert taken == () and "model.width" in why["phi"]
  shutil.rmtree(os.path.join(base, "checkpoints", "fesgan", "4"))
  taken, why = workdir_lib.start_from_stages(row_cfg, plan, str(tmp_path / "late"), base)
  assert taken == ("phi",) and why["fesgan"] == "not finished there (step 3 of 4)"


def test_bad_stages_are_named(tiny_config, tmp_path):
  cfg = _config(tiny_config, tmp_path / "tfds")
  cfg.stages = ("phi", "fesgann")
  with pytest.raises(ValueError, match="fesgann"):
    train.train_and_evaluate(cfg, str(tmp_path / "run"))
  cfg.stages = ("fesgan",)
  with pytest.raises(ValueError, match=r"'fesgan' needs \['phi'\]"):
    train.train_and_evaluate(cfg, str(tmp_path / "run"))
  cfg.stages = ("phi",)
  cfg.phi.steps = -1
  with pytest.raises(ValueError, match="phi.steps=-1"):
    train.train_and_evaluate(cfg, str(tmp_path / "run"))


@pytest.mark.slow
def test_checkpoint_restore_roundtrip(tiny_config, tmp_path):
  models = build_models(tiny_config, 7, 4)
  mesh = parallel.make_mesh()
  opt = tiny_config.phi.optimizer
  create = lambda: state_lib.create_phi_state(models, opt, jax.random.key(3))
  ck = checkpointing.StageCheckpointer(str(tmp_path), "phi")
  state = ck.restore_or_create(create, parallel.replicated(mesh))
  state = state.replace(step=state.step + 5)
  ck.save(5, state)
  restored = checkpointing.StageCheckpointer(str(tmp_path), "phi").restore_or_create(
      lambda: state_lib.create_phi_state(models, opt, jax.random.key(99)),
      parallel.replicated(mesh))
  assert int(restored.step) == 5
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(restored.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_fused_loop_equals_step_loop(tiny_config, tmp_path):
  """Steps run K at a time (lax.scan over the device-resident dataset, in chunks cut at log and
  checkpoint steps) give the states and logs of one step per call."""
  from jfesgan.data import pipeline
  from jfesgan.run import metrics as metrics_lib
  cfg = _config(tiny_config, tmp_path / "tfds", phi__steps=7)
  cfg.log_every, cfg.checkpoint_every = 3, 4  # chunks of 3, 1, 2 and 1 steps with K = 4
  train_data, _ = pipeline.train_test(cfg.data)
  models = build_models(cfg, train_data.num_classes, len(np.unique(train_data.subject)))
  ctx = stages.Context(config=cfg, models=models, train=train_data)
  mesh = parallel.make_mesh()
  out = {}
  for per_call in (1, 4):
    cfg.steps_per_call = per_call
    workdir = str(tmp_path / f"k{per_call}")
    writer = metrics_lib.MetricWriter(workdir)
    state, _ = train.run_stage(stages.PHI, ctx, {}, mesh=mesh, workdir=workdir, writer=writer)
    writer.close()
    out[per_call] = (jax.device_get(state), _stage_steps(workdir, "phi"),
                     checkpointing.latest_step(workdir, "phi"))
  (s1, logged1, saved1), (s4, logged4, saved4) = out[1], out[4]
  assert logged1 == logged4 == [3, 6, 7] and saved1 == saved4 == 7
  # (The states' optimiser objects are created anew per run: compare their arrays.)
  chex.assert_trees_all_close(jax.tree.leaves(s1), jax.tree.leaves(s4), atol=1e-6, rtol=1e-6)


def test_chunks_end_at_events_and_variant_changes():
  every_step = lambda s: True
  assert train._chunk_end(0, 100, 8, [50, 500], every_step) == 8
  assert train._chunk_end(46, 100, 8, [50, 500], every_step) == 50
  assert train._chunk_end(96, 99, 8, [50, 500], every_step) == 99
  assert train._chunk_end(10, 100, 8, [3], every_step) == 12
  # With n_critic = 3 the generator updates at steps 2, 5, 8: a chunk never mixes variants.
  variant = lambda step: step % 3 == 2
  assert train._chunk_end(0, 100, 8, [50], lambda s: variant(s) == variant(0)) == 2
  assert train._chunk_end(2, 100, 8, [50], lambda s: variant(s) == variant(2)) == 3
