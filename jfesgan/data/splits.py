"""Subject-independent splits: every subject's images fall in exactly one fold.

The assignment is roughly stratified by class: subjects are dealt greedily, largest first (ties
in a seeded random order), each to the fold whose class histogram it unbalances least.  Each
class counts relative to its total, so rare classes (CK+'s contempt, fear) are spread as evenly
as common ones.  When every subject has the same histogram (the procedural faces) this is
round-robin dealing of the seeded order, so fold sizes differ by at most one subject.
"""

from __future__ import annotations

import numpy as np


def subject_folds(subjects: np.ndarray, labels: np.ndarray, num_folds: int,
                  seed: int) -> dict[int, int]:
  """Assigns each distinct subject id to a fold in [0, num_folds), deterministic by ``seed``."""
  subjects, labels = np.asarray(subjects), np.asarray(labels)
  if subjects.shape != labels.shape:
    raise ValueError(f"subjects {subjects.shape} and labels {labels.shape} differ in shape")
  ids, subj_idx = np.unique(subjects, return_inverse=True)
  if (ids < 0).any():
    raise ValueError("subject-independent folds need subject ids; this dataset has none (-1): "
                     "use data.protocol='official'")
  if num_folds < 2 or num_folds > ids.size:
    raise ValueError(f"data.num_folds={num_folds} must be in [2, number of subjects={ids.size}]")
  classes, label_idx = np.unique(labels, return_inverse=True)
  hist = np.zeros((ids.size, classes.size))
  np.add.at(hist, (subj_idx, label_idx), 1.0)
  hist /= hist.sum(axis=0, keepdims=True)  # Each class weighs the same in total.
  order = np.random.default_rng([seed, 7]).permutation(ids.size)
  order = order[np.argsort(-hist[order].sum(axis=1), kind="stable")]
  folds = np.zeros((num_folds, classes.size))
  assign = {}
  for i in order:
    cost = ((folds + hist[i]) ** 2).sum(axis=1)  # Ties go to the lowest fold index.
    f = int(np.argmin(cost))
    folds[f] += hist[i]
    assign[int(ids[i])] = f
  return assign


def fold_masks(subjects: np.ndarray, labels: np.ndarray, fold: int, num_folds: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Boolean (train, test) masks over samples for holding out ``fold``."""
  if not 0 <= fold < num_folds:
    raise ValueError(f"data.test_fold={fold} must be in [0, {num_folds})")
  assign = subject_folds(subjects, labels, num_folds, seed)
  test = np.array([assign[int(s)] == fold for s in subjects], dtype=bool)
  return ~test, test
