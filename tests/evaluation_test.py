"""Evaluation: the loss-free identity score (nearest real face in pixels) and the run's report."""

import json

import numpy as np
import pytest

from jfesgan.evaluation.scores import change_made, lattice, pixel_nearest_person


def _people(rng, subjects, size=8):
  """One random face pattern per person; each image is its person's pattern under a random
  brightness and contrast and a little noise (what the standardisation must see through)."""
  pattern = {s: rng.normal(size=(size, size, 1)) for s in np.unique(subjects)}
  return np.stack([rng.uniform(0.5, 2.0) * pattern[s] + rng.uniform(-1, 1)
                   + 0.1 * rng.normal(size=(size, size, 1)) for s in subjects])


def test_copies_and_re_lit_faces_of_the_person_are_found():
  rng = np.random.default_rng(0)
  subjects = np.repeat(np.arange(5), 4)
  real = _people(rng, subjects)
  sources = rng.integers(0, len(real), 30)
  # Copies of the source image: always the right person.
  assert pixel_nearest_person(real[sources], sources, real, subjects)[0] == 1.0
  # Faces of people who are not among the real ones: rarely "found" (chance is 1/5).
  fresh = _people(np.random.default_rng(1), subjects)
  assert pixel_nearest_person(fresh[sources], sources, real, subjects)[0] < 0.5
  # The source re-lit (brightness, contrast) and noisier: still the right person.
  relit = 3.0 * real[sources] - 0.7 + 0.1 * rng.normal(size=real[sources].shape)
  assert pixel_nearest_person(relit, sources, real, subjects)[0] == 1.0


def test_a_swapped_person_scores_zero_and_chance_is_the_random_pick():
  rng = np.random.default_rng(2)
  subjects = np.array([0, 0, 0, 1, 2, 2])
  real = _people(rng, subjects)
  sources = np.array([0, 3, 4])
  # Each image is a face of ANOTHER person than its source's: never right.
  other = real[[3, 4, 0]]
  rate, chance = pixel_nearest_person(other, sources, real, subjects)
  assert rate == 0.0
  # Random pick among the 6 real faces: 3/6 for person 0, 1/6 for person 1, 2/6 for person 2.
  assert chance == pytest.approx((3 / 6 + 1 / 6 + 2 / 6) / 3)


def test_mismatched_inputs_are_refused_with_what_differs():
  real = np.zeros((4, 8, 8, 1))
  with pytest.raises(ValueError, match="differ in shape"):
    pixel_nearest_person(np.zeros((2, 8, 8, 3)), np.zeros(2, int), real, np.zeros(4, int))
  with pytest.raises(ValueError, match="one source per image"):
    pixel_nearest_person(np.zeros((2, 8, 8, 1)), np.zeros(3, int), real, np.zeros(4, int))


def test_change_made_counts_the_expressions_change_and_not_denoising():
  """The ideal edit makes all of the change, copying none, denoising alone none (its change is
  noise, unrelated to the expression's), half the edit half; a change elsewhere adds nothing."""
  rng = np.random.default_rng(0)
  own = rng.uniform(0.2, 0.8, (64, 8, 8, 1))
  target = own.copy()
  target[:, 5:7, 2:6] += 0.3  # the mouth changes
  x = own + rng.normal(0, 0.05, own.shape)  # the input: its own truth and pixel noise
  change = target - own
  assert change_made(x, x + change, change) == pytest.approx(1.0)
  assert change_made(x, x, change) == 0.0
  assert change_made(x, own, change) == pytest.approx(0.0, abs=0.05)  # denoised, not changed
  assert change_made(x, x + 0.5 * change, change) == pytest.approx(0.5)
  elsewhere = np.zeros_like(x)
  elsewhere[:, 0:2] = 0.3
  assert change_made(x, x + change + elsewhere, change) == pytest.approx(1.0)


def _smooth_faces(rng, n=32, size=48):
  """Smooth random images (blobs: a face's spectrum falls with frequency, none stands out)."""
  yy, xx = np.mgrid[:size, :size] / size
  out = np.zeros((n, size, size, 1))
  for i in range(n):
    for _ in range(6):
      cy, cx, r, a = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.3), rng.normal()
      out[i, ..., 0] += a * np.exp(-((yy - cy)**2 + (xx - cx)**2) / (2 * r * r))
  return out


def test_lattice_finds_a_decoders_grid_and_not_a_face_or_noise():
  """Smooth faces and white noise score near 0 dB; a faint grid of the decoder's period (a
  checkerboard, or any 8-pixel pattern tiled) lifts the score by many dB, in every position;
  a grid of another period is not this decoder's; bad shapes are named."""
  rng = np.random.default_rng(0)
  faces = _smooth_faces(rng)
  assert abs(lattice(faces, 8)) < 1.5
  assert abs(lattice(rng.normal(size=faces.shape), 8)) < 1.0
  tile = rng.normal(size=(8, 8))
  grid = np.tile(tile, (6, 6))[None, ..., None]
  checker = (np.indices((48, 48)).sum(0) % 2 * 2 - 1.0)[None, ..., None]
  scale = faces.std()
  assert lattice(faces + 0.05 * scale * grid, 8) > lattice(faces, 8) + 5
  assert lattice(faces + 0.05 * scale * checker, 8) > lattice(faces, 8) + 5
  assert lattice(faces + 0.05 * scale * np.roll(grid, (3, 5), axis=(1, 2)), 8) > lattice(faces, 8) + 5
  lattice7 = np.tile(rng.normal(size=(7, 7)), (7, 7))[None, :48, :48, None]
  assert lattice(faces + 0.05 * scale * lattice7, 8) < lattice(faces, 8) + 1.5
  with pytest.raises(ValueError, match="period 5 must be >= 2, divide the images' 48x48"):
    lattice(faces, 5)
  with pytest.raises(ValueError, match=r"must be \(N, H, W, C\)"):
    lattice(faces[..., 0], 8)


def test_the_report_says_what_each_score_means(tmp_path):
  """Every score with a plain name, its meaning, its direction and who reads it; chance beside
  accuracies; confusion matrices with the classes' full names; every stage's loss curves."""
  from jfesgan.evaluation import html_report
  names = ["anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"]
  cm = np.eye(7, dtype=int) * 3 + 1
  summary = {"eval/real/acc": 0.5, "synth/psnr": 22.0, "synth/psnr_copy": 25.8,
             "synth/expr_acc_t": 0.9, "synth/id_nearest": 0.86, "synth/id_nearest_chance": 0.0833,
             "judge/fesgan/acc_t": 0.4, "judge/real_acc": 0.6, "synth/new_score": 1.0,
             "class_names": names, "confusion": {"real": cm.tolist()}, "paths": {},
             "wall_seconds": {"phi": 1.0}}
  (tmp_path / "summary.json").write_text(json.dumps(summary))
  (tmp_path / "config.json").write_text(json.dumps({"stages": ["phi", "fesgan", "real"],
                                                    "data": {"name": "x", "image_size": 48}}))
  (tmp_path / "metrics.jsonl").write_text("".join(
      json.dumps({"stage": "fesgan", "step": s, "dimg/loss": 1.0 / s, "g/loss": 2.0, "g/rec": 0.3})
      + "\n" for s in (1, 2, 3)))
  page = html_report.build(str(tmp_path))
  assert "translation PSNR (dB)" in page and "PSNR of copying the input (dB)" in page
  row = page.split("translation PSNR (dB)")[1].split("</tr>")[0]
  assert "higher is better" in row and "renderer" in row
  row = page.split("expression read in translations")[1].split("</tr>")[0]
  assert "14.3 %" in row and "in-domain" in row  # chance: 1 of 7 classes
  row = page.split("judge reads translations (fesgan generator)")[1].split("</tr>")[0]
  assert "independent" in row
  row = page.split("right person, by Phi")[1].split("</tr>")[0]
  assert "8.3 %" in row
  assert "synth/new_score" in page  # a score the glossary does not know is shown by its key
  confusion = page.split("Confusion: the real recogniser")[1]
  assert all(f"<th>{n}</th>" in confusion for n in names) and "<td>40 %</td>" in confusion  # 4 of 10 right
  curves = page.split("Training curves: fesgan")[1]
  assert "alt='dimg/loss'" in curves and "alt='g/loss'" in curves and "alt='g/rec'" in curves
  assert html_report.describe("eval/joint/acc")[0] == "recognition accuracy (joint R)"
