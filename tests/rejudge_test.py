"""jfesgan.rejudge's table and the ensemble of judges (rejudge's scores are checked against a
judged run in train_test)."""

import numpy as np
import pytest

from jfesgan.data import classes
from jfesgan.evaluation import html_report as report
from jfesgan.evaluation import judge
from jfesgan.research import compare, rejudge


def test_table_reads_each_generator_beside_the_real_faces():
  runs = {"a": {"judge/real_acc": 0.8, "judge/fesgan/acc_t": 0.4, "judge/fesgan/acc_p": 0.5},
          "b": {"judge/real_acc": 0.5, "judge/fesgan/acc_t": 0.25, "judge/fesgan/acc_p": 0.1,
                "judge/joint/acc_t": 0.45, "judge/joint/acc_p": 0.3}}
  lines = rejudge.table(runs).splitlines()
  assert lines[0] == ("| run | judge on real faces | fesgan x_t | fesgan x_p | fesgan x_t / real "
                      "| joint x_t | joint x_p | joint x_t / real |")
  assert lines[2] == "| a | 80.0 % | 40.0 % | 50.0 % | 0.50 |  |  |  |"
  assert lines[3] == "| b | 50.0 % | 25.0 % | 10.0 % | 0.50 | 45.0 % | 30.0 % | 0.90 |"
  only_stage1 = rejudge.table({"a": runs["a"]}).splitlines()
  assert "joint" not in only_stage1[0] and len(only_stage1) == 3
  # The runs' own identity and reconstruction scores, where a run has them.
  runs["b"].update({"synth/id_nearest": 0.832, "synth/rec_l1": 0.2203})
  lines = rejudge.table(runs).splitlines()
  assert lines[0].endswith("| joint x_t / real | nearest real person (Phi) | reconstruction L1 |")
  assert lines[2].endswith("| 0.50 |  |  |  |  |  |")
  assert lines[3].endswith("| 0.90 | 83.2 % | 0.220 |")


def test_each_judge_family_has_its_own_columns_keys_and_words():
  runs = {"a": {"judge/real_acc": 0.8, "judge/fesgan/acc_t": 0.4, "judge/fesgan/acc_p": 0.5,
                "judge_residual/real_acc": 0.6, "judge_residual/fesgan/acc_t": 0.3,
                "judge_residual/fesgan/acc_p": 0.2}}
  lines = rejudge.table(runs).splitlines()
  assert lines[0] == ("| run | judge on real faces | fesgan x_t | fesgan x_p | fesgan x_t / real | "
                      "judge_residual: judge on real faces | judge_residual: fesgan x_t | "
                      "judge_residual: fesgan x_p | judge_residual: fesgan x_t / real |")
  assert lines[2] == "| a | 80.0 % | 40.0 % | 50.0 % | 0.50 | 60.0 % | 30.0 % | 20.0 % | 0.50 |"
  # A residual family's scores alone are tabled under its own root.
  alone = {"b": {k: v for k, v in runs["a"].items() if k.startswith("judge_residual/")}}
  assert rejudge.table(alone).splitlines()[2] == "| b | 60.0 % | 30.0 % | 20.0 % | 0.50 |"
  assert [judge.key_root(f) for f in ("trunk", "residual")] == ["judge", "judge_residual"]
  assert judge.is_judge_key("judge_residual/joint/t/happy") and judge.is_judge_key("judge/real_acc")
  assert not judge.is_judge_key("judge_fingerprints") and not judge.is_judge_key("synth/psnr")
  with pytest.raises(ValueError, match="'vit' is not one of"):
    judge.key_root("vit")
  name, meaning, better, kind = report.describe("judge_residual/joint/acc_t")
  assert name == "judge reads translations (joint generator) (residual family)"
  assert meaning.endswith("a judge of the residual architecture family")
  assert (better, kind) == ("higher", "independent")
  assert report.describe("judge/joint/acc_t")[0] == "judge reads translations (joint generator)"


@pytest.mark.parametrize("reader", [
    lambda d: rejudge.rejudge(d, d), report.build, lambda d: compare.read_single_run(d, "method")],
    ids=["rejudge", "report", "compare"])
def test_a_run_without_a_summary_is_named(tmp_path, reader):
  # Every reader of a finished run's summary.json goes through workdir_lib.read_summary.
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no summary.json; not the workdir of a "
                     "finished"):
    reader(str(tmp_path))


class _FakeJudge:
  """A judge with fixed probabilities for any images (its first rows)."""

  def __init__(self, class_names, probs, workdir="fake"):
    self.class_names, self.probs, self.workdir = tuple(class_names), np.asarray(probs), workdir

  def class_map(self, class_names):
    mine = {classes.canonical(n): i for i, n in enumerate(self.class_names)}
    return np.array([mine.get(classes.canonical(n), -1) for n in class_names])

  def probabilities(self, images):
    return self.probs[:len(images)]


def test_an_ensemble_of_judges_averages_their_probabilities():
  names = ("angry", "happy", "sad")
  a = _FakeJudge(names, [[0.6, 0.4, 0.0], [0.1, 0.1, 0.8]])
  b = _FakeJudge(names, [[0.1, 0.9, 0.0], [0.0, 0.3, 0.7]])
  both = judge.Ensemble((a, b))
  np.testing.assert_allclose(both.probabilities(np.zeros((2, 4, 4, 1))),
                             [[0.35, 0.65, 0.0], [0.05, 0.2, 0.75]])
  # Alone, a calls the first face angry; together they call it happy.
  np.testing.assert_array_equal(both.predict(np.zeros((2, 4, 4, 1))), [1, 2])
  np.testing.assert_array_equal(both.class_map(("anger", "contempt", "sadness")), [0, -1, 2])
  scores = judge.judge_scores(both, ("anger", "happy", "sadness"), real=np.zeros((2, 4, 4, 1)),
                              real_labels=np.array([1, 2]), x_t=np.zeros((2, 4, 4, 1)),
                              c_t=np.array([0, 2]), x_p=np.zeros((1, 4, 4, 1)),
                              c_p=np.array([1]))
  assert (scores["judge/real_acc"], scores["judge/acc_t"], scores["judge/acc_p"]) == (1.0, 0.5, 1.0)
  with pytest.raises(ValueError, match="do not share their classes: x: .*; y: "):
    judge.Ensemble((_FakeJudge(names, [[1, 0, 0]], "x"),
                    _FakeJudge(("happy", "sad"), [[1, 0]], "y")))
  with pytest.raises(ValueError, match="names no workdir"):
    judge.load(" , ")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    judge.load("/nowhere/a,/nowhere/b")
