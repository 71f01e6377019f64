"""Cross-validation and ablation: folds by subject, resumable, aggregated (tiny config)."""

import json
import os

import numpy as np
import pytest

from jfesgan import crossval


@pytest.mark.slow
def test_ablation_rows_share_stage1_and_aggregate(tiny_config, tmp_path):
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(tmp_path / "tfds")
  workdir = str(tmp_path / "abl")
  rows = ("real_only", "offline_aug", "joint_rdbp")
  results = {f: crossval.run_fold(cfg, workdir, f, ablation=True, rows=rows) for f in (0, 1)}
  # Rows reuse the fold's stage-1 checkpoints instead of retraining them.
  for row in rows[1:]:
    with open(os.path.join(workdir, "fold_0", row, "metrics.jsonl")) as f:
      stages = {json.loads(line)["stage"] for line in f}
    assert "fesgan" not in stages and "phi" not in stages and "joint" in stages, (row, stages)
  # The frozen generator of offline augmentation did not move; the full method's did.
  def joint_metrics(row):
    with open(os.path.join(workdir, "fold_0", row, "metrics.jsonl")) as f:
      return [r for r in map(json.loads, f) if r["stage"] == "joint"]
  assert all("g/update_norm" not in r for r in joint_metrics("offline_aug"))
  assert all(r["g/update_norm"] > 0 for r in joint_metrics("joint_rdbp"))
  agg = crossval.aggregate(results)
  assert list(agg) == list(rows)
  for row, a in agg.items():
    assert a["folds"] == [0, 1] and len(a["acc"]) == 2
    assert np.isclose(a["mean"], np.mean(a["acc"])) and a["std"] >= 0
    cm = np.asarray(a["confusion"])
    # Pooled over folds: every held-out image of both folds is counted once.
    assert cm.shape == (7, 7) and cm.sum() == 2 * 2 * 7  # 2 subjects x 7 images per fold
    np.testing.assert_allclose(a["per_class_accuracy"], np.diag(cm) / cm.sum(1))
  table = crossval.markdown_table(agg, "t", "cmd")
  assert "| joint_rdbp |" in table and "+-" in table
  # The table is built from every finished fold and row in the workdir ...
  assert crossval.aggregate(crossval.collect_finished(cfg, workdir, ablation=True)) == agg
  crossval.run_fold(cfg, workdir, 2, ablation=True, rows=("real_only",))
  more = crossval.aggregate(crossval.collect_finished(cfg, workdir, ablation=True))
  assert more["real_only"]["folds"] == [0, 1, 2] and more["joint_rdbp"]["folds"] == [0, 1]
  assert more["joint_rdbp"] == agg["joint_rdbp"]
  # ... and never mixes in a run of another configuration.
  other = cfg.copy_and_resolve_references()
  other.stage2.beta = 0.25
  with pytest.raises(ValueError, match=r"fold_0/config.json was run with another .*stage2.beta"):
    crossval.collect_finished(other, workdir, ablation=True)
  # Re-running a finished fold trains nothing new.
  before = os.path.getsize(os.path.join(workdir, "fold_0", "metrics.jsonl"))
  crossval.run_fold(cfg, workdir, 0, ablation=True, rows=("real_only",))
  after = os.path.getsize(os.path.join(workdir, "fold_0", "metrics.jsonl"))
  assert after - before < 2000  # only the evaluation line is appended


def test_fold_config_overrides(tiny_config):
  cfg = crossval.fold_config(tiny_config, 3, {"intra_mode": "plain"})
  assert cfg.data.test_fold == 3 and cfg.stage2.intra_mode == "plain"
  assert cfg.stages == ("phi", "fesgan", "joint")
  assert tiny_config.stage2.intra_mode == "rdbp"  # the original is untouched
