"""Paired statistics of cross-validated results: rows compared fold by fold (and seed by seed)."""

from __future__ import annotations

import numpy as np
from scipy import stats


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


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | tuple[None, None]:
  """The ``level`` confidence interval of the mean of independent ``values`` (Student's t with
  n - 1 degrees of freedom); (None, None) with fewer than two values."""
  v = np.asarray(values, np.float64)
  if len(v) < 2:
    return None, None
  half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
  return float(v.mean() - half), float(v.mean() + half)


def holm(p_values: dict[str, float]) -> dict[str, float]:
  """Holm's step-down adjustment of a family of p-values (strong control of the family-wise error):
  the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j))."""
  names = sorted(p_values, key=lambda k: p_values[k])
  m, running, out = len(names), 0.0, {}
  for i, name in enumerate(names):
    running = max(running, min(1.0, (m - i) * p_values[name]))
    out[name] = running
  return out


# The equivalence margin: a difference whose whole 95 % interval lies within +-MARGIN is "no
# larger than MARGIN either way" (accuracy as a fraction: 0.02 = 2 points).
MARGIN = 0.02


def paired_difference(values: dict[tuple[int, int], float], reference: dict[tuple[int, int], float]
                      ) -> dict | None:
  """A row against a reference, paired on the (seed, fold) runs both have.

  Folds are the independent units (their subjects differ); seeds of one fold are not, so each
  fold's differences are averaged over its seeds first.  Returns the pairs and their differences,
  the mean (of the fold means), its 95 % t-interval over the fold means, the sign-flip p of the
  fold means, the spread of the per-run differences and of seeds within a fold (the mean over
  folds of the seeds' standard deviation; None with one seed), and on how many runs the row is
  better and worse; None without a shared run.  (The interval is None with one fold.)
  """
  both = sorted(set(values) & set(reference))
  if not both:
    return None
  diff = [values[k] - reference[k] for k in both]
  folds = sorted({f for _, f in both})
  fold_mean = [float(np.mean([d for (s, f), d in zip(both, diff) if f == fold])) for fold in folds]
  within = [np.std([d for (s, f), d in zip(both, diff) if f == fold], ddof=1) for fold in folds
            if sum(f == fold for _, f in both) > 1]
  lo, hi = t_interval(fold_mean)
  return {"pairs": [list(k) for k in both], "diff": diff, "folds": folds, "fold_mean": fold_mean,
          "mean": float(np.mean(fold_mean)), "ci95": [lo, hi], "std": float(np.std(diff)),
          "seed_sd": float(np.mean(within)) if within else None,
          "better": int(sum(d > 0 for d in diff)), "worse": int(sum(d < 0 for d in diff)),
          "of": len(diff), "p_sign_flip": sign_flip_p(fold_mean)}


def verdict(comparison: dict, alpha: float = 0.05, margin: float = MARGIN) -> str:
  """In words: "better" / "worse" when the Holm-adjusted p (``p_holm``, else the raw one) is below
  ``alpha`` and the interval excludes 0; "equivalent" when the interval lies within +-``margin``;
  else "undecided" (the data say neither).  "better" and "worse" say "(by < margin)" when the
  interval is also inside the margin."""
  lo, hi = comparison["ci95"]
  if lo is None:
    return "undecided (one fold: no interval)"
  p = comparison.get("p_holm", comparison["p_sign_flip"])
  inside = -margin < lo and hi < margin
  small = f" (by < {100 * margin:g} points)" if inside else ""
  if p < alpha and lo > 0:
    return "better" + small
  if p < alpha and hi < 0:
    return "worse" + small
  if inside:
    return f"equivalent (within +-{100 * margin:g} points)"
  return "undecided"
