"""Paired statistics of cross-validated results: rows compared fold by fold (and seed by seed)."""

from __future__ import annotations

import numpy as np


def sign_flip_p(diff: list[float], exact_up_to: int = 16, samples: int = 1 << 16) -> float:
  """Two-sided p-value of a paired randomisation (sign-flip) test that the mean of the fold-wise
  differences ``diff`` is 0: the share of sign assignments whose |mean| is at least the observed
  one; all 2^n of them up to ``exact_up_to`` folds, else ``samples`` random ones (seeded)."""
  d = np.asarray(diff, np.float64)
  n = len(d)
  if n == 0:
    return 1.0
  if n <= exact_up_to:
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
  else:
    signs = np.random.default_rng(0).choice((-1, 1), size=(samples, n))
  means = np.abs(signs @ d) / n
  return float(np.mean(means >= abs(d.mean()) - 1e-12))
