"""Subject-independent splits: every subject's images fall in exactly one fold."""

from __future__ import annotations

import numpy as np


def subject_folds(subjects: np.ndarray, num_folds: int, seed: int) -> dict[int, int]:
  """Assigns each distinct subject id to a fold in [0, num_folds), deterministic by ``seed``.

  Subjects are shuffled with ``seed`` and dealt round-robin, so fold sizes (in subjects) differ by
  at most one.
  """
  ids = np.unique(np.asarray(subjects))
  if num_folds < 2 or num_folds > ids.size:
    raise ValueError(f"data.num_folds={num_folds} must be in [2, number of subjects={ids.size}]")
  order = np.random.default_rng([seed, 7]).permutation(ids)
  return {int(s): i % num_folds for i, s in enumerate(order)}


def fold_masks(subjects: np.ndarray, fold: int, num_folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Boolean (train, test) masks over samples for holding out ``fold``."""
  if not 0 <= fold < num_folds:
    raise ValueError(f"data.test_fold={fold} must be in [0, {num_folds})")
  assign = subject_folds(subjects, num_folds, seed)
  test = np.array([assign[int(s)] == fold for s in subjects], dtype=bool)
  return ~test, test
