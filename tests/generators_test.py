"""jfesgan generators: recipes' synthesis scores paired by seed, on made-up finished runs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jfesgan.research import generators

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_run(path, seed, **scores):
  os.makedirs(path)
  json.dump({"seed": seed, "data": {}, "model": {}}, open(os.path.join(path, "config.json"), "w"))
  json.dump({"class_names": ["a"], "eval/real/acc": 0.5, **scores},
            open(os.path.join(path, "summary.json"), "w"))
  return str(path)


def test_recipes_are_paired_by_seed_with_the_direction_of_each_score(tmp_path):
  a0 = fake_run(tmp_path / "a0", 0, **{"synth/psnr": 20.0, "synth/l1": 0.08})
  a1 = fake_run(tmp_path / "a1", 1, **{"synth/psnr": 21.0, "synth/l1": 0.07})
  b1 = fake_run(tmp_path / "b1", 1, **{"synth/psnr": 24.0, "synth/l1": 0.09})
  b0 = fake_run(tmp_path / "b0", 0, **{"synth/psnr": 23.0, "synth/l1": 0.05})
  recipes = dict(generators.read_recipe(s) for s in (f"a={a0},{a1}", f"b={b1},{b0}"))
  out = generators.compare(recipes)
  assert set(out["a"]) == {"synth/psnr", "synth/l1"}  # eval/ scores are not synthesis scores
  assert out["a"]["synth/psnr"]["per_seed"] == {0: 20.0, 1: 21.0}
  assert out["b"]["synth/psnr"]["minus_reference"] == {"mean": 3.0, "ci95": [3.0, 3.0],
                                                       "better": 2, "of": 2}
  # L1 is better lower: b is better on seed 0 (0.05 < 0.08) and worse on seed 1; the paired
  # differences -0.03 and +0.02 give mean -0.005 +- t(0.975, 1) * sd / sqrt(2).
  l1 = out["b"]["synth/l1"]["minus_reference"]
  assert l1["better"] == 1 and l1["of"] == 2 and l1["mean"] == pytest.approx(-0.005)
  half = 12.7062 * np.std([-0.03, 0.02], ddof=1) / np.sqrt(2)
  np.testing.assert_allclose(l1["ci95"], [-0.005 - half, -0.005 + half], rtol=1e-4)
  table = generators.markdown(out, "cmd", "abc")
  assert ("| `synth/psnr` | 20.5 (20, 21) | 23.5 (23, 24); +3, 95 % CI [+3, +3] (excludes 0), "
          "better on 2 of 2 seeds |") in table
  assert "-0.005, 95 % CI [-0.323, +0.313], better on 1 of 2 seeds |" in table
  # One seed: no interval.
  one = generators.compare(dict(generators.read_recipe(s) for s in (f"a={a0}", f"b={b0}")))
  assert one["b"]["synth/psnr"]["minus_reference"]["ci95"] is None
  assert "+3, better on 1 of 1 seeds |" in generators.markdown(one, "cmd", "abc")


def test_runs_scored_on_other_subjects_are_never_paired(tmp_path):
  a0 = fake_run(tmp_path / "a0", 0)
  b0 = fake_run(tmp_path / "b0", 0)
  assert generators.held_out([f"a={a0}", f"b={b0}"]) == "test"  # the default
  config = json.load(open(os.path.join(b0, "config.json")))
  config["data"]["heldout"] = "validation"
  json.dump(config, open(os.path.join(b0, "config.json"), "w"))
  with pytest.raises(ValueError, match=r"different subjects: .*a0: test, .*b0: validation"):
    generators.held_out([f"a={a0}", f"b={b0}"])
  assert generators.held_out([f"b={b0}"]) == "validation"
  one = generators.compare({"a": {0: {"synth/psnr": 1.0}}})
  assert "VALIDATION subjects" in generators.markdown(one, "cmd", "abc", "validation")


def test_bad_recipes_are_named(tmp_path):
  a0 = fake_run(tmp_path / "a0", 0)
  with pytest.raises(ValueError, match="two runs of seed 0"):
    generators.read_recipe(f"a={a0},{a0}")
  with pytest.raises(ValueError, match="expected NAME=RUN"):
    generators.read_recipe(a0)
  with pytest.raises(FileNotFoundError, match="no summary.json"):
    os.remove(os.path.join(a0, "summary.json"))
    generators.read_recipe(f"a={a0}")


@pytest.mark.slow
def test_the_command_writes_both_files_with_its_command_and_commit(tmp_path):
  a0 = fake_run(tmp_path / "a0", 0, **{"synth/psnr": 20.0})
  b0 = fake_run(tmp_path / "b0", 0, **{"synth/psnr": 22.0})
  out = str(tmp_path / "res" / "gen")
  done = subprocess.run([sys.executable, "-m", "jfesgan.research.generators", "--recipe",
                         f"a={a0}", "--recipe", f"b={b0}", "--out", out], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  saved = json.load(open(out + ".json"))
  assert saved["command"].startswith("jfesgan generators --recipe a=") and saved["commit"]
  assert saved["recipes"]["b"]["synth/psnr"]["minus_reference"]["mean"] == 2.0
  assert os.path.isfile(out + ".md")
  one = subprocess.run([sys.executable, "-m", "jfesgan.research.generators", "--recipe",
                        f"a={a0}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert one.returncode == 1 and one.stderr.strip().endswith("(the first is the reference)")


@pytest.mark.slow
def test_rescoring_a_finished_run_reproduces_its_own_truth_scores(tiny_run, monkeypatch):
  """--rescore recomputes the renderer-truth scores from the run's stage-1 generator: on a run
  of this code they are the summary's own; the stage-1 checkpoint is read once for the
  generator and Phi."""
  from jfesgan.evaluation import restored  # pylint: disable=g-import-not-at-top
  _, workdir = tiny_run
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  reads = []
  real_restore = generators.workdir_lib.restore_finished

  def counted(*args, **kwargs):
    reads.append(args[1])
    return real_restore(*args, **kwargs)

  monkeypatch.setattr(generators.workdir_lib, "restore_finished", counted)
  monkeypatch.setattr(restored, "restore_finished", counted)
  _, runs = generators.read_recipe(f"tiny={workdir}", rescore=True)
  assert reads == ["fesgan"]
  (scores,) = runs.values()
  for key in ("synth/psnr", "synth/psnr_copy", "synth/psnr_edit", "synth/psnr_denoised",
              "synth/psnr_rec_truth", "synth/l1_rec_truth",
              "synth/l1", "synth/change_cos", "synth/change_made", "synth/lattice",
              "synth/lattice_prior", "synth/lattice_real", "synth/id_nearest_edit",
              "synth/id_nearest_truth", "synth/id_nearest_pixel_edit",
              "synth/id_nearest_pixel_truth"):
    assert scores[key] == pytest.approx(summary[key], rel=1e-4, abs=1e-5), key

