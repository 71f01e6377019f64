"""Cross-validation and ablation bookkeeping, on made-up result files (no training here: the
shared-stage mechanism itself is tested end to end in train_test.py)."""

import json
import os

import numpy as np
import pytest

from jfesgan.research import compare as compare_lib
from jfesgan.research import crossval, stats

K = 7


def _confusion(rng, n_per_class=2):
  """A random confusion matrix with ``n_per_class`` images of each class."""
  cm = np.zeros((K, K), np.int64)
  for c in range(K):
    for _ in range(n_per_class):
      cm[c, rng.integers(K)] += 1
  return cm


def _write_row(cfg, workdir, fold, row, rng):
  """A finished row as train_and_evaluate leaves it: config.json and summary.json."""
  d = crossval.row_workdir(workdir, fold, row)
  os.makedirs(d, exist_ok=True)
  with open(os.path.join(d, "config.json"), "w") as f:
    json.dump(crossval.row_config(cfg, fold, row).to_dict(), f)
  stage = crossval.ABLATION_ROWS[row][0] if row != "method" else "joint"
  cm = _confusion(rng)
  summary = {f"eval/{stage}/acc": float(np.trace(cm) / cm.sum()), "confusion": {stage: cm.tolist()},
             "synth/id_sim": float(rng.uniform()), f"judge/{stage}/acc_t": float(rng.uniform()),
             f"judge/{stage}/t/happy": 0.5, "class_names": [f"c{k}" for k in range(K)]}
  with open(os.path.join(d, "summary.json"), "w") as f:
    json.dump(summary, f)
  return summary


def test_aggregate_collect_and_table(tiny_config, tmp_path):
  cfg = tiny_config.copy_and_resolve_references()
  workdir = str(tmp_path)
  rng = np.random.default_rng(0)
  rows = ("real", "offline_aug", "joint_rdbp")
  written = {f: {r: _write_row(cfg, workdir, f, r, rng) for r in rows} for f in (0, 1)}
  agg = crossval.aggregate(crossval.collect_finished(cfg, workdir, ablation=True))
  assert list(agg) == list(rows)
  for row, a in agg.items():
    stage = crossval.ABLATION_ROWS[row][0]
    accs = [written[f][row][f"eval/{stage}/acc"] for f in (0, 1)]
    assert a["folds"] == [0, 1] and a["acc"] == accs
    np.testing.assert_allclose([a["mean"], a["std"]], [np.mean(accs), np.std(accs)])
    cm = sum(np.asarray(written[f][row]["confusion"][stage]) for f in (0, 1))
    np.testing.assert_array_equal(a["confusion"], cm)
    np.testing.assert_allclose(a["per_class_accuracy"], np.diag(cm) / cm.sum(1))
    assert a["synthesis"]["0"]["synth/id_sim"] == written[0][row]["synth/id_sim"]
    assert "eval/" not in " ".join(a["synthesis"]["1"])
    if row != "real":  # paired with real only, fold by fold
      diff = [written[f][row][f"eval/{stage}/acc"] - written[f]["real"]["eval/real/acc"]
              for f in (0, 1)]
      p = a["minus_real"]
      np.testing.assert_allclose([p["mean"], p["std"]], [np.mean(diff), np.std(diff)])
      assert p["folds"] == [0, 1] and p["diff"] == diff and p["of"] == 2
      assert p["better"] == sum(d > 0 for d in diff) and p["worse"] == sum(d < 0 for d in diff)
      assert p["p_sign_flip"] == stats.sign_flip_p(diff)
    else:
      assert "minus_real" not in a
  table = crossval.markdown_table(agg, "t", "cmd", [f"c{k}" for k in range(K)])
  assert "(`joint_rdbp`) | " in table and "| 2 (2 folds x 1 seeds) |" in table and "`cmd`" in table
  assert "| `joint_rdbp` | real only | " in table and "| row | c0 | c1 |" in table
  assert "`synth/id_sim`" in table
  assert "`judge/joint/acc_t`" in table and "t/happy" not in table

  # Rows may finish on different folds over several calls; the table covers what is there.
  _write_row(cfg, workdir, 2, "real", rng)
  more = crossval.aggregate(crossval.collect_finished(cfg, workdir, ablation=True))
  assert more["real"]["folds"] == [0, 1, 2] and more["joint_rdbp"] == agg["joint_rdbp"]
  # A plain cross-validation in another workdir reads the method's rows only.
  _write_row(cfg, str(tmp_path / "cv"), 3, "method", rng)
  cv = crossval.aggregate(crossval.collect_finished(cfg, str(tmp_path / "cv"), ablation=False))
  assert list(cv) == ["method"] and cv["method"]["folds"] == [3]

  # The command's tables (--table_only writes just these): JSON and Markdown, in workdir and out.
  table = crossval.write_tables(cfg, workdir, True, "cmd", out=str(tmp_path / "results"))
  for d in (workdir, str(tmp_path / "results")):
    with open(os.path.join(d, "ablation.json")) as f:
      saved = json.load(f)
    assert saved["rows"]["real"]["folds"] == [0, 1, 2] and saved["command"] == "cmd"
    assert saved["seed"] == cfg.seed
    with open(os.path.join(d, "ablation.md")) as f:
      assert f.read() == table
  assert "(`joint_rdbp`) | " in table

  # A finished row of another configuration is never mixed in.
  other = cfg.copy_and_resolve_references()
  other.joint.beta = 0.25
  with pytest.raises(ValueError, match=r"fold_0/offline_aug/config.json was run with another "
                     r".*joint.beta"):
    crossval.collect_finished(other, workdir, ablation=True)


def test_the_intra_class_loss_curve_of_rows_that_have_one(tiny_config, tmp_path):
  cfg = tiny_config.copy_and_resolve_references()
  workdir, rng = str(tmp_path), np.random.default_rng(0)
  logged = {0: [(100, 9.0), (50, 30.0)], 1: [(50, 4.0), (100, 6.0)]}  # falls on fold 0 only
  for fold, points in logged.items():
    for row in ("real", "joint_no_intra", "joint_rdbp", "real_intra"):
      _write_row(cfg, workdir, fold, row, rng)
      records = [{"stage": "fesgan", "step": 50, "r/intra": 99.0}]  # another stage's: not read
      records += [{"stage": "joint", "step": s, "r/intra": v if row == "joint_rdbp" else 0.0}
                  for s, v in points]
      records += [{"stage": "real", "step": s, "real/intra": 2 * v} for s, v in points]
      with open(os.path.join(crossval.row_workdir(workdir, fold, row), "metrics.jsonl"), "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records) + '{"stage": "joint", "st')
  agg = crossval.aggregate(crossval.collect_finished(cfg, workdir, ablation=True))
  # Only the row with an intra-class loss has a curve; in step order; the cut line left out.
  assert [r for r in agg if "intra_curve" in agg[r]] == ["joint_rdbp", "real_intra"]
  assert agg["joint_rdbp"]["intra_curve"] == {"0": [[50, 30.0], [100, 9.0]],
                                              "1": [[50, 4.0], [100, 6.0]]}
  assert agg["real_intra"]["intra_curve"]["0"] == [[50, 60.0], [100, 18.0]]  # the real stage's
  table = crossval.markdown_table(agg, "t", "cmd")
  assert "| `joint_rdbp` | 17 | 7.5 | 1 of 2 runs |" in table
  assert "| `real_intra` | 34 | 15 | 1 of 2 runs |" in table
  assert "| `joint_no_intra` |" not in table.split("intra-class loss while R trains")[1]


def test_sign_flip_p_is_the_exact_randomisation_test():
  # Five folds all better: only the all-plus and all-minus assignments reach the mean: 2/32.
  assert stats.sign_flip_p([0.01, 0.02, 0.03, 0.04, 0.05]) == 2 / 32
  # One fold worse out of three, (1, 2, -1): |sum| 2 is reached by every assignment except the
  # two where both unit entries take the sign opposite to the 2 (sum 0): 6/8.
  assert stats.sign_flip_p([1.0, 2.0, -1.0]) == 6 / 8
  assert stats.sign_flip_p([0.0, 0.0]) == 1.0 and stats.sign_flip_p([]) == 1.0
  # Many folds: sampled, close to the exact value (all better: 2 / 2^n, here ~0).
  assert stats.sign_flip_p([0.01] * 20) < 1e-3
  mixed = list(np.random.default_rng(1).normal(0.0, 1.0, 18))
  assert abs(stats.sign_flip_p(mixed, exact_up_to=20) - stats.sign_flip_p(mixed)) < 0.01


def test_intervals_holm_and_verdicts():
  # Student t, 3 degrees of freedom: t(0.975) = 3.182446 (printed tables).
  lo, hi = stats.t_interval([1.0, 2.0, 3.0, 4.0])
  half = 3.182446305 * np.std([1, 2, 3, 4], ddof=1) / 2
  np.testing.assert_allclose([lo, hi], [2.5 - half, 2.5 + half], rtol=1e-8)
  assert stats.t_interval([0.3]) == (None, None)
  # Holm: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04, raised to the running max 0.06.
  np.testing.assert_allclose(list(stats.holm({"a": 0.01, "b": 0.04, "c": 0.03}).values()),
                             [0.03, 0.06, 0.06])
  assert stats.holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx(
      {"a": 0.03, "b": 0.06, "c": 0.06})
  # Seeds of one fold are averaged before the folds are compared.
  row = {(0, 0): 0.8, (1, 0): 0.9, (0, 1): 0.7, (1, 1): 0.7, (0, 2): 0.6}
  ref = {(0, 0): 0.7, (1, 0): 0.7, (0, 1): 0.75, (1, 1): 0.65, (0, 2): 0.6, (1, 2): 0.5}
  c = stats.paired_difference(row, ref)
  assert c["pairs"] == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]] and c["folds"] == [0, 1, 2]
  np.testing.assert_allclose(c["diff"], [0.1, -0.05, 0.0, 0.2, 0.05], atol=1e-12)
  np.testing.assert_allclose(c["fold_mean"], [0.15, 0.0, 0.0], atol=1e-12)
  np.testing.assert_allclose(c["mean"], 0.05)
  np.testing.assert_allclose(c["ci95"], stats.t_interval(c["fold_mean"]))
  np.testing.assert_allclose(c["seed_sd"], np.std([0.1, 0.2], ddof=1))  # both folds' sd alike
  assert (c["better"], c["worse"], c["of"]) == (3, 1, 5)
  assert c["p_sign_flip"] == stats.sign_flip_p(c["fold_mean"])
  assert stats.paired_difference(row, {(5, 5): 0.1}) is None
  verdict = lambda lo, hi, p: stats.verdict({"ci95": [lo, hi], "p_sign_flip": 0.9, "p_holm": p})
  assert verdict(0.005, 0.015, 0.01) == "better (by < 2 points)"
  assert verdict(0.03, 0.08, 0.01) == "better" and verdict(-0.08, -0.03, 0.01) == "worse"
  assert verdict(0.03, 0.08, 0.2) == "undecided"  # the interval excludes 0, Holm does not agree
  assert verdict(-0.01, 0.015, 0.5) == "equivalent (within +-2 points)"
  assert verdict(-0.01, 0.025, 0.5) == "undecided"
  assert verdict(None, None, 0.5).startswith("undecided (one fold")


def test_seeds_train_their_own_folds_and_rows_pair_on_seed_and_fold(tiny_config, tmp_path,
                                                                     monkeypatch):
  cfg = tiny_config.copy_and_resolve_references()
  workdir, rng, seeds = str(tmp_path / "v"), np.random.default_rng(3), (0, 1)
  # The command's loop: seed by seed, every fold of a seed first, each in its own root.
  calls = []
  monkeypatch.setattr(crossval, "run_fold", lambda c, w, f, a, r: calls.append((c.seed, w, f)))
  crossval.run_all(cfg, workdir, [0, 2], seeds, True, after_fold=lambda: calls.append("table"))
  assert calls == [(0, f"{workdir}/seed_0", 0), "table", (0, f"{workdir}/seed_0", 2), "table",
                   (1, f"{workdir}/seed_1", 0), "table", (1, f"{workdir}/seed_1", 2), "table"]
  calls.clear()
  crossval.run_all(cfg, workdir, [1], None, True)
  assert calls == [(cfg.seed, workdir, 1)]  # one seed: the workdir itself, as before seeds

  written = {}
  for s in seeds:
    for f in (0, 1, 2):
      for row in ("real", "joint_rdbp", "real_intra"):
        written[s, f, row] = _write_row(crossval.seeded(cfg, s), crossval.seed_dir(workdir, s, seeds),
                                        f, row, rng)
  results = crossval.collect_finished(cfg, workdir, ablation=True, seeds=seeds)
  assert sorted(results) == [(s, f) for s in seeds for f in (0, 1, 2)]
  agg = crossval.aggregate(results)
  acc = lambda s, f, row: written[s, f, row][f"eval/{crossval.ABLATION_ROWS[row][0]}/acc"]
  a = agg["joint_rdbp"]
  assert a["runs"] == [[s, f] for s in seeds for f in (0, 1, 2)] and a["seeds"] == [0, 1]
  assert a["folds"] == [0, 1, 2] and set(a["synthesis"]) == {"0/0", "0/1", "0/2", "1/0", "1/1", "1/2"}
  np.testing.assert_allclose(a["fold_mean"]["1"], (acc(0, 1, "joint_rdbp") + acc(1, 1, "joint_rdbp")) / 2)
  np.testing.assert_allclose(a["seed_mean"]["1"], np.mean([acc(1, f, "joint_rdbp") for f in (0, 1, 2)]))
  for name, ref in (("minus_real", "real"), ("minus_control", "real_intra")):
    want = stats.paired_difference({(s, f): acc(s, f, "joint_rdbp") for s in seeds for f in (0, 1, 2)},
                                   {(s, f): acc(s, f, ref) for s in seeds for f in (0, 1, 2)})
    got = a[name]
    for key in ("pairs", "diff", "fold_mean", "mean", "ci95", "p_sign_flip", "seed_sd"):
      assert got[key] == want[key], key
    family = {r: agg[r][name]["p_sign_flip"] for r in agg if name in agg[r]}
    assert got["p_holm"] == stats.holm(family)["joint_rdbp"] and got["verdict"] == stats.verdict(got)
    assert set(got["per_class"]) <= {str(j) for j in range(K)}
  assert "minus_real" not in agg["real"] and "minus_control" in agg["real"]
  assert "minus_control" not in agg["real_intra"]

  table = crossval.write_tables(cfg, workdir, True, "cmd", seeds=seeds)
  with open(os.path.join(workdir, "ablation.json")) as f:
    saved = json.load(f)
  assert saved["seeds"] == [0, 1] and "seed" not in saved and saved["commit"]
  assert "| 6 (3 folds x 2 seeds) |" in table and "| `joint_rdbp` | the control | " in table
  assert "Commit `" in table
  with pytest.raises(ValueError, match="several seeds"):
    compare_lib.read_run(workdir, "real")
  # A run of another seed under a seed's folder is never mixed in.
  with open(os.path.join(workdir, "seed_1", "fold_0", "config.json"), "w") as f:
    json.dump(crossval.row_config(crossval.seeded(cfg, 0), 0, "real").to_dict(), f)
  with pytest.raises(ValueError, match=r"seed_1/fold_0/config.json was run with another .*'seed'"):
    crossval.collect_finished(cfg, workdir, ablation=True, seeds=seeds)


def test_row_configs(tiny_config):
  real = crossval.row_config(tiny_config, 3, "real")
  assert real.data.test_fold == 3 and real.stages == ("phi", "fesgan", "real")
  plain = crossval.row_config(tiny_config, 3, "joint_plain")
  assert plain.stages == ("phi", "fesgan", "joint") and plain.joint.intra_mode == "plain"
  offline = crossval.row_config(tiny_config, 3, "offline_aug")
  assert not offline.joint.update_generator and not offline.joint.train_discriminators
  assert crossval.row_config(tiny_config, 3, "rdbp_no_new_ids").joint.synthetic == ("translation",)
  control = crossval.row_config(tiny_config, 3, "real_intra")  # no stages 0-1, joint's weight
  assert control.stages == ("real",) and control.real.intra_weight == tiny_config.joint.intra_weight
  assert real.real.intra_weight == 0
  method = crossval.row_config(tiny_config, 1, "method")
  assert method.stages == tiny_config.stages and method.data.test_fold == 1
  assert tiny_config.joint.intra_mode == "rdbp" and tiny_config.data.test_fold == 0  # untouched


def test_run_fold_trains_the_base_once_and_rows_from_it(tiny_config, tmp_path, monkeypatch):
  from jfesgan import train
  calls = []

  def fake(config, workdir, *, start_from=None):
    calls.append((tuple(config.stages), config.joint.intra_mode, workdir, start_from))
    return {"workdir": workdir}

  monkeypatch.setattr(train, "train_and_evaluate", fake)
  out = crossval.run_fold(tiny_config, str(tmp_path), 2, ablation=True,
                          rows=("real", "joint_plain", "joint_rdbp", "real_intra"))
  base = os.path.join(str(tmp_path), "fold_2")
  assert calls == [
      (("phi", "fesgan", "real"), "rdbp", base, None),
      (("phi", "fesgan", "joint"), "plain", os.path.join(base, "joint_plain"), base),
      (("phi", "fesgan", "joint"), "rdbp", os.path.join(base, "joint_rdbp"), base),
      (("real",), "rdbp", os.path.join(base, "real_intra"), None)]
  assert out["real"] == {"workdir": base}
  calls.clear()
  crossval.run_fold(tiny_config, str(tmp_path), 2, ablation=False)
  assert calls == [(tuple(tiny_config.stages), "rdbp", base, None)]


def test_base_rows_do_not_depend_on_the_joint_section(tiny_config, tmp_path):
  """The base run (stages phi, fesgan, real) stays valid when only config.joint changes; the
  joint rows do not."""
  cfg = tiny_config.copy_and_resolve_references()
  rng = np.random.default_rng(1)
  _write_row(cfg, str(tmp_path), 0, "real", rng)
  other = cfg.copy_and_resolve_references()
  other.joint.beta = 0.25
  assert list(crossval.collect_finished(other, str(tmp_path), ablation=True)[(0, 0)]) == ["real"]
  other.fesgan.adv_weight = 0.5
  with pytest.raises(ValueError, match=r"fold_0/config.json .*fesgan.adv_weight"):
    crossval.collect_finished(other, str(tmp_path), ablation=True)


@pytest.mark.slow
def test_cross_database_tests_each_rows_recogniser_and_keeps_its_scores(tiny_run, tmp_path,
                                                                       monkeypatch):
  """--evaluate_on: each row's own recogniser (real-only R for `real`, the joint R for a joint
  row) tested on another database; the scores are kept in the row's workdir and read back."""
  import shutil  # pylint: disable=g-import-not-at-top

  from jfesgan.evaluation import restored
  from jfesgan.tools import evaluate
  cfg, run = tiny_run
  workdir = str(tmp_path / "cv")
  for row in ("real", "joint_rdbp"):
    shutil.copytree(run, crossval.row_workdir(workdir, 0, row))
  with open(os.path.join(run, "summary.json")) as f:
    summary = json.load(f)  # the run's own scores, as collect_finished reads them
  def results_of(summary):
    return {(0, 0): {row: dict(summary, run_dir=crossval.row_workdir(workdir, 0, row))
                     for row in ("real", "joint_rdbp")}}
  results = results_of(summary)
  other = cfg.copy_and_resolve_references()  # "another database": all of the tiny faces
  assert crossval.cross_database(results, other) == "procedural_faces"
  data = evaluate.test_data(other.data)
  for row, stage in (("real", "real"), ("joint_rdbp", "joint")):
    want = evaluate.evaluate(restored.RestoredRecogniser.load(crossval.row_workdir(workdir, 0, row), stage),
                             data)
    got = results[(0, 0)][row]
    assert got["xdb/procedural_faces/acc"] == want["accuracy"]
    assert got["xdb/procedural_faces/mean_class_acc"] == want["mean_class_accuracy"]
    with open(os.path.join(crossval.row_workdir(workdir, 0, row),
                           "evaluate_procedural_faces.json")) as f:
      assert json.load(f)["stage"] == stage

  def no_loading(*args, **kwargs):
    raise AssertionError("the kept scores should have been read back")
  monkeypatch.setattr(restored.RestoredRecogniser, "load", no_loading)
  again = results_of(summary)
  crossval.cross_database(again, other)
  assert again == results
  agg = crossval.aggregate(again)
  table = crossval.markdown_table(agg, "t", "cmd")
  assert "`xdb/procedural_faces/acc`" in table


def _crossval_json(path, seed, accs, row="method"):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "crossval.json"), "w") as f:
    json.dump({"command": "c", "seed": seed,
               "rows": {row: {"folds": sorted(accs), "acc": [accs[k] for k in sorted(accs)]}}}, f)
  return str(path)


def _single_run(path, seed, fold, summary, heldout="validation"):
  os.makedirs(path)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump({"seed": seed, "data": {"test_fold": fold, "heldout": heldout}}, f)
  with open(os.path.join(path, "summary.json"), "w") as f:
    json.dump(summary, f)
  return str(path)


def test_rejudged_replaces_the_runs_judge_scores_and_keeps_them(tiny_config, tmp_path,
                                                                  monkeypatch):
  from jfesgan.research import rejudge
  cfg = tiny_config.copy_and_resolve_references()
  workdir = str(tmp_path / "cv")
  rng = np.random.default_rng(0)
  for row in ("real", "joint_rdbp"):
    _write_row(cfg, workdir, 0, row, rng)
  calls = []

  def fake_rejudge(d, judges):  # the scoring itself is checked against a judged run in train_test
    calls.append((d, judges))
    return {"judge/real_acc": 0.5, "judge/fesgan/acc_t": 0.25 * len(calls)}

  monkeypatch.setattr(rejudge, "rejudge", fake_rejudge)
  prints = {"a": "0123456789ab", "b": "ba9876543210"}
  families = {"a": "trunk", "b": "residual"}
  loads, panels = [], []

  def fake_load(spec):  # the judges are loaded once for all the rows that need them
    loads.append(spec)
    panels.append(object())
    return panels[-1]

  monkeypatch.setattr(crossval.judge_lib, "load", fake_load)
  monkeypatch.setattr(crossval.judge_lib, "fingerprints", lambda panel: dict(prints))
  monkeypatch.setattr(crossval.judge_lib, "families", lambda panel: dict(families))
  results = crossval.collect_finished(cfg, workdir, ablation=True)
  assert crossval.rejudged(results, "/j/a, /j/b") == "a+b"
  assert loads == ["/j/a,/j/b"] and [c[1] for c in calls] == panels * 2
  for k, row in enumerate(("real", "joint_rdbp")):
    summary = results[(0, 0)][row]
    assert {x: v for x, v in summary.items() if x.startswith("judge/")} == {
        "judge/real_acc": 0.5, "judge/fesgan/acc_t": 0.25 * (k + 1)}  # the run's own are gone
    assert summary["judge_fingerprints"] == prints
    with open(os.path.join(crossval.row_workdir(workdir, 0, row), "rejudge_a+b.json")) as f:
      kept = json.load(f)
    assert kept["judge"] == "/j/a,/j/b" and kept["fingerprints"] == prints
    assert kept["families"] == families and summary["judge_families"] == families
  assert crossval.aggregate(results)["joint_rdbp"]["judge_fingerprints"] == [prints]
  # Read back by a later call with the same judges (with the fingerprints kept then, not
  # today's); another judge is scored afresh.
  prints["a"] = "retrained000"
  again = crossval.collect_finished(cfg, workdir, ablation=True)
  crossval.rejudged(again, "/j/a,/j/b")
  assert len(calls) == 2 and len(loads) == 1 and again[(0, 0)]["joint_rdbp"]["judge/fesgan/acc_t"] == 0.5
  assert again[(0, 0)]["joint_rdbp"]["judge_fingerprints"]["a"] == "0123456789ab"
  crossval.rejudged(crossval.collect_finished(cfg, workdir, ablation=True), "/j/a")
  assert len(calls) == 4 and loads == ["/j/a,/j/b", "/j/a"]
  with pytest.raises(ValueError, match="names no judge"):
    crossval.rejudged(again, " ,")
  # A run without a generator keeps no judge scores.
  real_only = tiny_config.copy_and_resolve_references()
  real_only.stages = ("real",)
  _write_row(real_only, str(tmp_path / "r"), 0, "method", rng)
  plain = crossval.collect_finished(real_only, str(tmp_path / "r"), ablation=False)
  crossval.rejudged(plain, "/j/a")
  assert len(calls) == 4 and not any(k.startswith("judge/") for k in plain[(0, 0)]["method"])


def test_compare_reads_single_runs(tmp_path):
  both = _single_run(tmp_path / "both", 2, 4, {"eval/real/acc": 0.5, "eval/joint/acc": 0.75})
  assert compare_lib.read_run(both, "method") == (2, {4: 0.75})
  assert compare_lib.read_run(both, "real") == (2, {4: 0.5})
  real = _single_run(tmp_path / "real", 1, 0, {"eval/real/acc": 0.25}, heldout="test")
  assert compare_lib.read_single_run(real, "method") == (1, 0, 0.25, "test")
  with pytest.raises(ValueError, match=r"real/summary.json: no 'eval/joint/acc'"):
    compare_lib.read_run(real, "joint")
  with pytest.raises(ValueError, match="not 'offline_aug'"):
    compare_lib.read_run(both, "offline_aug")
  # A run without its config.json is named the way every reader of a run names it.
  os.remove(os.path.join(real, "config.json"))
  with pytest.raises(FileNotFoundError, match="real: no config.json; not the workdir of a fin"):
    compare_lib.read_single_run(real, "method")


def test_compare_pairs_recipes_by_seed_and_fold(tmp_path):
  ref = {0: {0: 0.8, 1: 0.9, 2: 0.7}, 1: {0: 0.85, 1: 0.8, 2: 0.75}}
  new = {0: {0: 0.9, 1: 0.9, 2: 0.8}, 1: {0: 0.8, 1: 0.95}, 2: {0: 1.0}}  # seed 2: no partner
  out = compare_lib.compare({"ref": ref, "new": new})
  pairs = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
  assert out["new"]["pairs"] == [list(p) for p in pairs]
  diff = np.array([new[s][f] - ref[s][f] for s, f in pairs])
  d = out["new"]["minus_reference"]
  np.testing.assert_allclose([d["mean"], d["std"]], [diff.mean(), diff.std()])
  assert (d["better"], d["worse"], d["of"]) == (3, 1, 5)
  by_fold = [np.mean([diff[0], diff[3]]), np.mean([diff[1], diff[4]]), diff[2]]
  np.testing.assert_allclose(list(d["fold_means"].values()), by_fold)
  assert d["p_sign_flip_folds"] == stats.sign_flip_p(list(d["fold_means"].values()))
  np.testing.assert_allclose(out["new"]["seed_means"]["1"], 0.875)
  assert "minus_reference" not in out["ref"] and out["ref"]["mean"] == np.mean(
      [ref[s][f] for s in ref for f in ref[s]])
  table = compare_lib.markdown(out, "cmd")
  assert "| `new` |" in table and "3 of 5 better, 1 worse" in table and "reference" in table
  with pytest.raises(ValueError, match="shares no"):
    compare_lib.compare({"ref": ref, "other": {5: {0: 1.0}}})

  # Read from cross-validation results; errors name the file.
  run = _crossval_json(tmp_path / "a", 3, {0: 0.5, 1: 0.75})
  assert compare_lib.read_run(run, "method") == (3, {0: 0.5, 1: 0.75})
  with pytest.raises(ValueError, match=r"a/crossval.json: no row 'real'"):
    compare_lib.read_run(run, "real")
  with pytest.raises(FileNotFoundError, match="no crossval.json or ablation.json"):
    compare_lib.read_run(str(tmp_path), "method")
  with open(os.path.join(run, "crossval.json"), "w") as f:
    json.dump({"rows": {}}, f)
  with pytest.raises(ValueError, match="no 'seed' field"):
    compare_lib.read_run(run, "method")


@pytest.mark.slow
def test_compare_command_line(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  a = [_crossval_json(tmp_path / f"a{s}", s, {0: 0.5, 1: 0.6}) for s in (0, 1)]
  b = [_crossval_json(tmp_path / f"b{s}", s, {0: 0.7, 1: 0.6}) for s in (0, 1)]
  out = str(tmp_path / "res" / "cmp")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, "-m", "jfesgan.research.compare", "--out", out,
                         "--recipe", "a=" + ",".join(a), "--recipe", "b=" + ",".join(b)],
                        cwd=root, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  with open(out + ".json") as f:
    saved = json.load(f)
  np.testing.assert_allclose(saved["recipes"]["b"]["minus_reference"]["mean"], 0.1)
  assert saved["recipes"]["b"]["minus_reference"]["better"] == 2
  with open(out + ".md") as f:
    assert f.read() in done.stdout
  bad = subprocess.run([sys.executable, "-m", "jfesgan.research.compare", "--recipe", "a=" + a[0]],
                       cwd=root, capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and "at least two --recipe" in bad.stderr

  # Single runs (one fold each) make up a recipe's folds; validation and test runs never pair.
  one = {k: _single_run(tmp_path / f"x{k}", 0, k, {"eval/joint/acc": 0.5 + 0.1 * k})
         for k in (0, 1)}
  two = {k: _single_run(tmp_path / f"y{k}", 0, k, {"eval/joint/acc": 0.6}) for k in (0, 1)}
  test_run = _single_run(tmp_path / "t1", 0, 1, {"eval/joint/acc": 0.9}, heldout="test")
  done = subprocess.run([sys.executable, "-m", "jfesgan.research.compare", "--out", out,
                         "--recipe", f"x={one[0]},{one[1]}", "--recipe", f"y={two[0]},{two[1]}"],
                        cwd=root, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  with open(out + ".json") as f:
    saved = json.load(f)["recipes"]
  assert saved["y"]["pairs"] == [[0, 0], [0, 1]]
  np.testing.assert_allclose(saved["y"]["minus_reference"]["mean"], 0.05)
  mixed = subprocess.run([sys.executable, "-m", "jfesgan.research.compare", "--recipe",
                          f"x={one[0]},{one[1]}", "--recipe", f"y={two[0]},{test_run}"],
                         cwd=root, capture_output=True, text=True, timeout=120)
  assert mixed.returncode != 0 and "cannot be paired" in mixed.stderr
  twice = subprocess.run([sys.executable, "-m", "jfesgan.research.compare", "--recipe",
                          f"x={one[0]},{one[0]}", "--recipe", f"y={two[0]},{two[1]}"],
                         cwd=root, capture_output=True, text=True, timeout=120)
  assert twice.returncode != 0 and "two runs of seed 0, fold 0" in twice.stderr
