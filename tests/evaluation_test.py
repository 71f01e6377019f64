"""The loss-free identity score: nearest real face in pixels."""

import numpy as np
import pytest

from jfesgan.evaluation.scores import pixel_nearest_person


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
