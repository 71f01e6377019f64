"""The procedural faces, their TFDS builder, subject-disjoint splits and deterministic batches."""

import chex
import numpy as np
import pytest

from jfesgan.data import pipeline, procedural, splits
from jfesgan.evaluation import scores

SPEC = procedural.FaceSpec(image_size=32, channels=3, num_identities=5, frames=2)


@pytest.fixture(scope="module")
def generated():
  return procedural.generate(SPEC)


def test_generate_is_deterministic_and_complete(generated):
  again = procedural.generate(SPEC)
  for k in generated:
    np.testing.assert_array_equal(generated[k], again[k])
  n = 5 * 7 * 2
  chex.assert_shape(generated["image"], (n, 32, 32, 3))
  assert generated["image"].dtype == np.uint8
  # Every identity shows every expression in every frame, once.
  combos = set(zip(generated["subject"], generated["label"], generated["frame"]))
  assert len(combos) == n
  assert generated["image"].std() > 20  # not blank


def test_identity_does_not_depend_on_dataset_size():
  """Identity i is a function of (seed, i) only, so datasets of different sizes agree on it."""
  small = procedural.generate(procedural.FaceSpec(image_size=32, num_identities=2, frames=1))
  large = procedural.generate(procedural.FaceSpec(image_size=32, num_identities=4, frames=1))
  np.testing.assert_array_equal(small["image"], large["image"][:small["image"].shape[0]])


def test_seed_changes_faces():
  a = procedural.generate(procedural.FaceSpec(image_size=32, num_identities=2, frames=1, seed=0))
  b = procedural.generate(procedural.FaceSpec(image_size=32, num_identities=2, frames=1, seed=1))
  assert np.abs(a["image"].astype(float) - b["image"]).mean() > 5


def test_render_truth_is_clean_and_expression_specific(generated):
  i = np.flatnonzero((generated["subject"] == 1) & (generated["frame"] == 1))  # 7 peak images
  poses = generated["pose"][i]
  truth = procedural.render_truth(SPEC, generated["subject"][i], generated["label"][i], poses)
  again = procedural.render_truth(SPEC, generated["subject"][i], generated["label"][i], poses)
  np.testing.assert_array_equal(truth, again)
  # The noisy dataset image is close to its clean truth, and far from another expression's truth.
  real = generated["image"][i] / 255.0
  err_same = np.abs(real - truth).mean()
  other = procedural.render_truth(SPEC, generated["subject"][i], (generated["label"][i] + 3) % 7, poses)
  assert err_same < 0.06
  assert np.abs(truth - other).reshape(7, -1).mean(1).min() > 0.003
  with pytest.raises(ValueError, match="expression labels"):
    procedural.render_truth(SPEC, [0], [7], poses[:1])
  with pytest.raises(ValueError, match="identities"):
    procedural.render_truth(SPEC, [5], [0], poses[:1])


def test_neutral_class_is_optional():
  spec = procedural.FaceSpec(image_size=32, num_identities=2, frames=1, include_neutral=True)
  assert spec.class_names[0] == "neutral" and spec.num_classes == 8
  assert procedural.generate(spec)["label"].max() == 7


def test_bad_spec_is_named():
  with pytest.raises(ValueError, match="data.channels"):
    procedural.FaceSpec(channels=2)
  with pytest.raises(ValueError, match="data.image_size"):
    procedural.FaceSpec(image_size=8)


def test_tfds_builder_round_trip(tmp_path, generated):
  from jfesgan.data import procedural_tfds
  b = procedural_tfds.builder(SPEC, data_dir=str(tmp_path))
  data = pipeline.read_source(b.as_data_source()["train"], SPEC.class_names)
  assert len(data) == generated["label"].shape[0]
  # TFDS shuffles records on disk: compare after sorting by (subject, label, frame).
  order = np.lexsort((data.extras["frame"], data.label, data.subject))
  np.testing.assert_array_equal(data.image[order], generated["image"])
  np.testing.assert_array_equal(data.label[order], generated["label"])
  np.testing.assert_array_equal(data.subject[order], generated["subject"])
  np.testing.assert_allclose(data.extras["pose"][order], generated["pose"])
  # A second call reuses the prepared files.
  b2 = procedural_tfds.builder(SPEC, data_dir=str(tmp_path))
  assert b2.data_dir == b.data_dir


def test_change_made_per_class_reads_each_target_column(tiny_config, tmp_path):
  """``synth/change_made/<class>`` is the change made over the translations to that class alone:
  a "generator" that makes the ideal edit towards one class and copies its input otherwise
  scores about 1 there (clipping to [-1, 1] takes a little), 0 for every other class, and the
  pooled score is that class's share of it."""
  cfg = tiny_config.data.copy_and_resolve_references()
  cfg.data_dir = str(tmp_path)
  _, test = pipeline.train_test(cfg)
  idx, c_t = scores.translation_targets(test.label, test.num_classes)
  x = pipeline.to_float(test.image[idx])
  edited = scores.ideal_edits(x, test.render_truth(idx, c_t),
                              test.render_truth(idx, test.label[idx]))
  x_t = np.where((c_t == 2)[:, None, None, None], edited, x)
  out = scores.truth_scores(x, x_t, test, idx, c_t)
  chosen = out[f"synth/change_made/{test.class_names[2]}"]
  assert 0.9 < chosen <= 1.0
  for k, name in enumerate(test.class_names):
    if k != 2:
      assert out[f"synth/change_made/{name}"] == 0.0
  assert out["synth/change_made"] == pytest.approx(np.mean(c_t == 2) * chosen, rel=1e-6)


def test_reconstruction_is_scored_against_the_inputs_own_truth(tiny_config, tmp_path):
  """``synth/psnr_rec_truth`` scores the reconstructions against the inputs' own clean truth: a
  perfect re-drawing of the person scores the floor's 100 dB, copying the noisy input scores its
  own PSNR against that truth (computed here by hand), and without reconstructions there is no
  such score."""
  cfg = tiny_config.data.copy_and_resolve_references()
  cfg.data_dir = str(tmp_path)
  _, test = pipeline.train_test(cfg)
  idx, c_t = scores.translation_targets(test.label, test.num_classes)
  x = pipeline.to_float(test.image[idx])
  own = test.render_truth(idx, test.label[idx])
  perfect = scores.truth_scores(x, x, test, idx, c_t, x_rec=2.0 * own - 1.0)
  assert perfect["synth/psnr_rec_truth"] == pytest.approx(100.0)
  assert perfect["synth/l1_rec_truth"] == pytest.approx(0.0, abs=1e-6)
  copied = scores.truth_scores(x, x, test, idx, c_t, x_rec=x)
  mse = np.mean((((x + 1) / 2 - own) ** 2).reshape(len(idx), -1), -1)
  assert copied["synth/psnr_rec_truth"] == pytest.approx(np.mean(-10 * np.log10(mse)), rel=1e-5)
  assert copied["synth/psnr_rec_truth"] < 60.0
  # Its own truth, not the target's: copying scores differently against the two.
  assert copied["synth/psnr_rec_truth"] != pytest.approx(copied["synth/psnr_copy"], abs=1e-3)
  assert "synth/psnr_rec_truth" not in scores.truth_scores(x, x, test, idx, c_t)


def test_subject_folds_are_disjoint_balanced_and_deterministic():
  subjects = np.repeat(np.arange(23), 5)
  labels = np.tile(np.arange(5), 23)
  a = splits.subject_folds(subjects, labels, 10, seed=3)
  assert a == splits.subject_folds(subjects, labels, 10, seed=3)
  assert a != splits.subject_folds(subjects, labels, 10, seed=4)
  sizes = np.bincount(list(a.values()), minlength=10)
  assert sizes.max() - sizes.min() <= 1
  tests = [set(subjects[splits.fold_masks(subjects, labels, f, 10, 3)[1]]) for f in range(10)]
  assert set().union(*tests) == set(range(23))
  for f in range(10):
    train, test = splits.fold_masks(subjects, labels, f, 10, 3)
    assert not set(subjects[train]) & set(subjects[test])
    assert (train ^ test).all()
  with pytest.raises(ValueError, match="num_folds"):
    splits.subject_folds(subjects, labels, 30, 0)
  with pytest.raises(ValueError, match="test_fold"):
    splits.fold_masks(subjects, labels, 10, 10, 0)
  with pytest.raises(ValueError, match="need subject ids"):
    splits.subject_folds(-np.ones(20, int), np.zeros(20, int), 2, 0)


def test_subject_folds_are_stratified_by_class():
  # CK+-like: subjects with 1-6 sequences of 3 frames each, a rare class (6) and a common one (0).
  rng = np.random.default_rng(0)
  subjects, labels = [], []
  for s in range(118):
    for c in rng.choice(7, size=rng.integers(1, 7), replace=False, p=[.25, .2, .15, .15, .1, .1, .05]):
      subjects += [s] * 3
      labels += [c] * 3
  subjects, labels = np.array(subjects), np.array(labels)
  assign = splits.subject_folds(subjects, labels, 10, seed=0)
  fold = np.array([assign[s] for s in subjects])
  counts = np.stack([np.bincount(labels[fold == f], minlength=7) for f in range(10)])
  spread = counts.max(0) - counts.min(0)
  # Every class is spread over the folds within a few sequences (3 frames each) ...
  assert (spread <= 12).all(), counts
  # ... far more evenly than dealing the same subjects round-robin, class-blind.
  order = np.random.default_rng([0, 7]).permutation(118)
  blind = {int(s): i % 10 for i, s in enumerate(order)}
  blind_fold = np.array([blind[s] for s in subjects])
  blind_counts = np.stack([np.bincount(labels[blind_fold == f], minlength=7) for f in range(10)])
  assert spread.sum() < 0.5 * (blind_counts.max(0) - blind_counts.min(0)).sum()


def _dataset(generated):
  return pipeline.ArrayDataset(generated["image"], generated["label"], generated["subject"],
                               SPEC.class_names)


def test_batches_are_a_function_of_the_step(generated):
  data = _dataset(generated)
  a = pipeline.Batches(data, 16, seed=1, hflip=True)
  b = pipeline.Batches(data, 16, seed=1, hflip=True)
  for step in (7, 0, 3, 100):  # any order, fresh instance: same batch
    chex.assert_trees_all_equal(a.at(step), b.at(step))
  # One epoch visits every image once.
  n = len(data)
  seen = np.concatenate([a.indices(s) for s in range(n // 16)])
  assert len(np.unique(seen)) == len(seen)
  batch = a.at(0)
  assert batch["image"].dtype == np.float32 and -1 <= batch["image"].min() <= batch["image"].max() <= 1
  assert pipeline.Batches(data, 16, seed=2).indices(0).tolist() != a.indices(0).tolist()


def test_subject_index_is_contiguous(generated):
  data = _dataset(generated).take(generated["subject"] >= 2)
  batch = pipeline.Batches(data, 8, seed=0, subject_index=True).at(0)
  assert batch["subject"].min() >= 0 and batch["subject"].max() < 3


def test_dataset_validation():
  with pytest.raises(ValueError, match="'label' has 2 rows"):
    pipeline.ArrayDataset(np.zeros((3, 4, 4, 1), np.uint8), np.zeros(2, np.int32),
                          np.zeros(3, np.int32), ("a",))
  with pytest.raises(ValueError, match="labels must lie"):
    pipeline.ArrayDataset(np.zeros((1, 4, 4, 1), np.uint8), np.array([3]), np.zeros(1, np.int32),
                          ("a", "b"))


def test_unknown_dataset_is_named(tiny_config):
  cfg = tiny_config.data.copy_and_resolve_references()
  cfg.name = "ckplus_typo"
  with pytest.raises(ValueError, match="ckplus_typo"):
    pipeline.load(cfg)


def test_procedural_truth_travels_with_the_dataset(tiny_config, tmp_path):
  """The loader attaches the renderer as ground truth; a subset keeps it, aligned with its rows."""
  cfg = tiny_config.data.copy_and_resolve_references()
  cfg.data_dir = str(tmp_path)
  train, test = pipeline.train_test(cfg)
  assert train.truth is not None and test.truth is not None
  spec = pipeline.face_spec(cfg)
  rows = np.array([3, 0, 5])
  targets = (test.label[rows] + 1) % test.num_classes
  want = procedural.render_truth(spec, test.subject[rows], targets, test.extras["pose"][rows])
  np.testing.assert_array_equal(test.render_truth(rows, targets), want)
  sub = test.take(rows)
  np.testing.assert_array_equal(sub.render_truth(np.arange(3), targets), want)
  no_truth = pipeline.ArrayDataset(test.image, test.label, test.subject, test.class_names)
  with pytest.raises(ValueError, match="no ground truth"):
    no_truth.render_truth(rows, targets)


def test_ideal_edits_make_the_truths_change_and_keep_the_person(tiny_config, tmp_path):
  """The ideal edit is the input plus the truth's change between the two expressions (nothing for
  the input's own expression); truth_scores asks the person questions of it and of the clean
  truth (the ceilings): the ideal edits find their person by pixels where another person's face
  would not, and the Phi question is asked of exactly those images."""
  cfg = tiny_config.data.copy_and_resolve_references()
  cfg.data_dir = str(tmp_path)
  _, test = pipeline.train_test(cfg)
  x = pipeline.to_float(test.image)
  idx, c_t = scores.translation_targets(test.label, test.num_classes)
  truth, own = test.render_truth(idx, c_t), test.render_truth(idx, test.label[idx])
  np.testing.assert_allclose(scores.ideal_edits(x[idx], own, own), x[idx])
  ideal = scores.ideal_edits(x[idx], truth, own)
  inside = np.abs(x[idx] + 2 * (truth - own)) < 1
  np.testing.assert_allclose(ideal[inside], (x[idx] + 2 * (truth - own))[inside], atol=1e-6)
  assert np.abs(ideal - x[idx]).max() > 0.1  # the expressions do change the face

  asked = []
  got = scores.truth_scores(x[idx], x[idx], test, idx, c_t,
                            person_by_phi=lambda im: asked.append(im) or 0.5)
  assert got["synth/id_nearest_pixel_edit"] == scores.pixel_nearest_person(
      ideal, idx, x, test.subject)[0] == 1.0
  assert got["synth/id_nearest_pixel_truth"] == scores.pixel_nearest_person(
      2 * truth - 1, idx, x, test.subject)[0]
  assert got["synth/id_nearest_edit"] == got["synth/id_nearest_truth"] == 0.5
  np.testing.assert_allclose(asked[0], ideal, atol=1e-6)
  np.testing.assert_allclose(asked[1], 2 * truth - 1, atol=1e-6)
  assert "synth/id_nearest_edit" not in scores.truth_scores(x[idx], x[idx], test, idx, c_t)
  # Another person's face in every slot finds that person, not the input's.
  other = np.array([np.flatnonzero(test.subject != test.subject[i])[0] for i in idx])
  assert scores.pixel_nearest_person(x[other], idx, x, test.subject)[0] == 0.0


@pytest.mark.parametrize("subject_index", [False, True])
def test_device_gather_equals_host_batches(generated, subject_index):
  """The fused loop gathers each batch on the device from the resident dataset: the same batch,
  flips and labels as the host's Batches.at, bit for bit."""
  import jax
  data = _dataset(generated)
  batches = pipeline.Batches(data, 8, seed=3, hflip=True, subject_index=subject_index)
  arrays = jax.device_put(batches.arrays())
  gather = jax.jit(pipeline.gather_batch)
  for step in (0, 5, 17):
    host = batches.at(step)
    assert batches.flips(step).any() and not batches.flips(step).all()
    chex.assert_trees_all_equal(jax.device_get(gather(arrays, batches.indices(step),
                                                      batches.flips(step))), host)
