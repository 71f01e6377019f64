"""Recipes compared paired, fold by fold and seed by seed: each recipe is one cross-validation
per seed (``jfesgan crossval ... --config.seed=S``), the first recipe the reference.

  jfesgan compare --out results/ck48/validation/recogniser \\
      --recipe default=runs/val_default_s0,runs/val_default_s1 \\
      --recipe pretrained=runs/val_pre_s0,runs/val_pre_s1

Each ``--recipe NAME=RUN[,RUN...]`` names cross-validation workdirs (or folders holding their
``crossval.json`` / ``ablation.json``, such as ``--out`` folders); ``--row`` picks the row of
each (default ``method``, the configured method; ``real`` etc. for an ablation).  A RUN may also
be the workdir of one ``python -m jfesgan.main`` run (one fold: ``data.test_fold``, its seed,
the accuracy of its joint R, or with ``--row real`` / ``joint`` of that stage's R): a recipe's
single runs of one seed make up its folds, and runs held out on validation subjects are never
paired with runs held out on a test fold.  Pairs are
(seed, fold) present in both; the table gives each recipe's mean over its pairs with the
reference, its mean per seed, and the paired difference: mean +- std over (seed, fold) pairs, on
how many it is better and worse, and the sign-flip p-value of the fold-wise differences (each
fold's differences averaged over the seeds, so that seeds of one fold do not count as
independent folds).  Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags

from jfesgan.research.stats import sign_flip_p
from jfesgan.run import workdir as workdir_lib
from jfesgan.run.flags import one_line_errors, parse_flags


def result_file(path: str) -> str | None:
  """The cross-validation results in folder ``path`` (``crossval.json`` or ``ablation.json``),
  or None."""
  for name in ("crossval.json", "ablation.json"):
    file = os.path.join(path, name)
    if os.path.isfile(file):
      return file
  return None


def read_run(path: str, row: str) -> tuple[int, dict[int, float]]:
  """(seed, {fold: accuracy}) of ``row`` in the cross-validation at ``path``; raises naming the
  file and what is missing."""
  file = result_file(path)
  if file is None:
    if os.path.isfile(os.path.join(path, "summary.json")):
      seed, fold, acc, _ = read_single_run(path, row)
      return seed, {fold: acc}
    raise FileNotFoundError(f"{path}: no crossval.json or ablation.json (run `jfesgan "
                            "crossval` there first), nor a finished run's summary.json")
  result = workdir_lib.read_json(file)
  if "seeds" in result:
    raise ValueError(f"{file}: a cross-validation of several seeds ({result['seeds']}); its table "
                     "already pairs its rows seed by seed (minus_real, minus_control): compare "
                     "recipes of one seed per workdir")
  if "seed" not in result:
    raise ValueError(f"{file}: no 'seed' field (written before seeds were recorded: rewrite it "
                     "with jfesgan crossval ... --table_only)")
  rows = result["rows"]
  if row not in rows:
    raise ValueError(f"{file}: no row {row!r}; rows: {sorted(rows)}")
  return int(result["seed"]), dict(zip(rows[row]["folds"], rows[row]["acc"]))


def read_single_run(path: str, row: str) -> tuple[int, int, float, str]:
  """(seed, fold, accuracy, held-out kind) of one finished ``python -m jfesgan.main`` run: its
  joint R's accuracy (``row`` "method"; the real-only R's where it has no joint stage) or the R of
  stage ``row`` ("real", "joint"); raises naming the file and what is missing."""
  summary = workdir_lib.read_summary(path)
  config = workdir_lib.read_config(path)
  stage = row if row in ("real", "joint") else (
      "joint" if "eval/joint/acc" in summary else "real")
  if row not in ("method", "real", "joint"):
    raise ValueError(f"{path}: a single run has rows 'method', 'real' and 'joint', not {row!r}")
  key = f"eval/{stage}/acc"
  if key not in summary:
    raise ValueError(f"{os.path.join(path, 'summary.json')}: no {key!r} (stage {stage!r} did not "
                     "run there)")
  data = config["data"]
  return (int(config["seed"]), int(data["test_fold"]), float(summary[key]),
          str(data.get("heldout", "test")))


def compare(recipes: dict[str, dict[int, dict[int, float]]]) -> dict[str, dict]:
  """``recipes``: name -> {seed: {fold: accuracy}}, the first the reference.  Per recipe: its
  pairs with the reference, mean, per-seed means and (but for the reference) the paired
  difference."""
  names = list(recipes)
  ref = recipes[names[0]]
  out = {}
  for name in names:
    runs = recipes[name]
    pairs = sorted((s, f) for s in runs for f in runs[s] if f in ref.get(s, {}))
    if not pairs:
      raise ValueError(f"recipe {name!r} shares no (seed, fold) with {names[0]!r}")
    acc = np.array([runs[s][f] for s, f in pairs])
    seeds = sorted({s for s, _ in pairs})
    entry = {"pairs": [list(p) for p in pairs], "acc": acc.tolist(), "mean": float(acc.mean()),
             "seed_means": {str(s): float(np.mean([runs[s][f] for t, f in pairs if t == s]))
                            for s in seeds}}
    if name != names[0]:
      diff = acc - np.array([ref[s][f] for s, f in pairs])
      folds = sorted({f for _, f in pairs})
      by_fold = [float(np.mean([d for (s, f), d in zip(pairs, diff) if f == g])) for g in folds]
      entry["minus_reference"] = {
          "reference": names[0], "mean": float(diff.mean()), "std": float(diff.std()),
          "better": int((diff > 0).sum()), "worse": int((diff < 0).sum()), "of": len(pairs),
          "fold_means": dict(zip(map(str, folds), by_fold)),
          "p_sign_flip_folds": sign_flip_p(by_fold)}
    out[name] = entry
  return out


def markdown(result: dict[str, dict], command: str) -> str:
  lines = [f"`{command}`", "",
           "| recipe | mean | per seed | minus the reference, same (seed, fold) pairs |",
           "| --- | --- | --- | --- |"]
  for name, e in result.items():
    seeds = " ".join(f"{s}:{100 * v:.1f}" for s, v in e["seed_means"].items())
    d = e.get("minus_reference")
    vs = (f"{100 * d['mean']:+.1f} +- {100 * d['std']:.1f} ({d['better']} of {d['of']} better, "
          f"{d['worse']} worse; folds' sign-flip p = {d['p_sign_flip_folds']:.3f})" if d
          else "reference")
    lines.append(f"| `{name}` | {100 * e['mean']:.1f} % | {seeds} | {vs} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  f = flags.FLAGS
  recipes: dict[str, dict[int, dict[int, float]]] = {}
  heldout: dict[str, str] = {}
  for spec in f.recipe:
    name, sep, paths = spec.partition("=")
    if not sep or not name or not paths:
      raise app.UsageError(f"--recipe {spec!r}: expected NAME=RUN[,RUN...]")
    if name in recipes:
      raise app.UsageError(f"--recipe {name!r} given twice")
    runs: dict[int, dict[int, float]] = {}
    for path in paths.split(","):
      seed, accs = read_run(path, f.row)
      if result_file(path) is None:  # a single run
        kind = read_single_run(path, f.row)[3]
        if heldout.setdefault("kind", kind) != kind:
          raise app.UsageError(f"--recipe {name}: {path} is held out on {kind!r} subjects, "
                               f"other runs on {heldout['kind']!r}: they cannot be paired")
      elif seed in runs:
        raise app.UsageError(f"--recipe {name}: two runs with seed {seed} ({path})")
      for fold, acc in accs.items():
        if fold in runs.get(seed, {}):
          raise app.UsageError(f"--recipe {name}: two runs of seed {seed}, fold {fold} ({path})")
        runs.setdefault(seed, {})[fold] = acc
    recipes[name] = runs
  if len(recipes) < 2:
    raise app.UsageError("give at least two --recipe (the first is the reference)")
  result = compare(recipes)
  command = "jfesgan compare " + " ".join(sys.argv[1:])
  table = markdown(result, command)
  if f.out:
    os.makedirs(os.path.dirname(os.path.abspath(f.out)), exist_ok=True)
    with open(f.out + ".json", "w") as fh:
      json.dump({"command": command, "row": f.row, "recipes": result}, fh, indent=2)
    with open(f.out + ".md", "w") as fh:
      fh.write(table)
  print(table, flush=True)


def run() -> None:
  """``jfesgan compare`` (and ``python -m jfesgan.research.compare``)."""
  flags.DEFINE_multi_string("recipe", [], "NAME=RUN[,RUN...]: a recipe's cross-validations, one "
                            "per seed; the first recipe is the reference.")
  flags.DEFINE_string("row", "method", "The row of each cross-validation to compare.")
  flags.DEFINE_string("out", "", "Write <out>.json and <out>.md.")
  app.run(one_line_errors(main), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
