"""The table of jfesgan.rejudge (its scores are checked against a judged run in train_test)."""

import pytest

from jfesgan import rejudge


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


def test_a_run_without_a_summary_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="not the workdir of a finished"):
    rejudge.rejudge(str(tmp_path), str(tmp_path))
