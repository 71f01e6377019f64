"""Subject-independent k-fold cross-validation and the ablation table.

  python -m jfesgan.crossval --config configs/joint.py --workdir runs/cv [--folds 0,1,2]
  python -m jfesgan.crossval --config configs/joint.py --workdir runs/ablation --ablation

Each fold holds out one fold of subjects (``data.num_folds`` folds, ``data.fold_seed``) and runs
the whole pipeline in ``<workdir>/fold_<k>``; a fold that finished is read back, an interrupted
one resumes from its checkpoints, so the command can be re-run until it is complete.  With
``--ablation`` every fold trains stages 0-1 once and then each row's stage 2 in
``fold_<k>/<row>`` (the shared stage-0/1 checkpoints are linked in), under the same budget:

1. ``real_only``: R on real images alone (the real-only recogniser of every run);
2. ``offline_aug``: R on real + images of the frozen stage-1 generator;
3. ``joint_no_intra``: joint learning without the intra-class loss;
4. ``joint_plain``: joint + intra-class loss with ordinary back-propagation;
5. ``joint_rdbp``: joint + intra-class loss with RDBP (the full method);
6. ``rdbp_no_new_ids``: the full method with translations x_t only (no new identities).

Outputs mean +- std over folds of held-out accuracy, the pooled confusion matrix, and a Markdown
table (``ablation.md`` / ``crossval.md``) with the exact command.  The table covers every finished
fold and row in the workdir, so rows can be run on different folds by several calls (``--rows``,
``--folds``); a finished row run with another configuration is an error, never mixed in.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from jfesgan import evaluation

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/joint.py", "Configuration file.",
                                lock_config=False)
flags.DEFINE_string("workdir", None, "Root of the folds' workdirs (resumed if present).",
                    required=True)
flags.DEFINE_string("folds", "", "Comma-separated folds to run (default: all data.num_folds).")
flags.DEFINE_bool("ablation", False, "Run the six ablation rows instead of the configured method.")
flags.DEFINE_string("rows", "", "With --ablation: comma-separated rows to run (default: all six).")

# Row name -> stage-2 overrides (None: the real-only recogniser, no stage 2 of its own).
ABLATION_ROWS = {
    "real_only": None,
    "offline_aug": dict(update_generator=False, generator_terms=False, intra_mode="none",
                        train_discriminators=False),
    "joint_no_intra": dict(intra_mode="none"),
    "joint_plain": dict(intra_mode="plain"),
    "joint_rdbp": dict(intra_mode="rdbp"),
    "rdbp_no_new_ids": dict(intra_mode="rdbp", synthetic=("translation",)),
}
BASE_STAGES = ("phi", "fesgan", "r_real")


def fold_config(config, fold: int, row_overrides: dict | None = None, with_joint: bool = True):
  """A copy of ``config`` holding out ``fold``, with stage-2 overrides."""
  cfg = config.copy_and_resolve_references()
  cfg.data.test_fold = fold
  cfg.stages = ("phi", "fesgan", "joint") if with_joint else ("phi", "fesgan")
  for k, v in (row_overrides or {}).items():
    cfg.stage2[k] = v
  return cfg


def _link_base(fold_dir: str, row_dir: str) -> None:
  """Makes the row's workdir reuse the fold's stage-0/1 (and real-only R) checkpoints."""
  os.makedirs(os.path.join(row_dir, "checkpoints"), exist_ok=True)
  for stage in BASE_STAGES:
    link = os.path.join(row_dir, "checkpoints", stage)
    if not os.path.lexists(link):
      os.symlink(os.path.join(fold_dir, "checkpoints", stage), link)


def row_workdir(workdir: str, fold: int, row: str) -> str:
  """Where a row of a fold runs: the fold's own workdir for the configured method and for
  ``real_only`` (the base run's recogniser), ``fold_<k>/<row>`` for the other ablation rows."""
  fold_dir = os.path.join(workdir, f"fold_{fold}")
  return fold_dir if row in ("method", "real_only") else os.path.join(fold_dir, row)


def row_config(config, fold: int, row: str):
  """The configuration of a row of a fold (``method``: the configured method)."""
  if row == "method":
    return fold_config(config, fold)
  overrides = ABLATION_ROWS[row]
  return fold_config(config, fold, overrides, with_joint=overrides is not None)


def run_fold(config, workdir: str, fold: int, ablation: bool,
             rows: tuple[str, ...] = tuple(ABLATION_ROWS)) -> dict[str, dict]:
  """Trains and evaluates one fold; returns {row: summary} (``rows`` of the ablation)."""
  from jfesgan import train

  def run(row: str) -> dict:
    return train.train_and_evaluate(row_config(config, fold, row), row_workdir(workdir, fold, row))

  if not ablation:
    return {"method": run("method")}
  base = run("real_only")  # Stages 0-1 and the real-only R, shared by every row.
  out = {}
  for row in rows:
    if ABLATION_ROWS[row] is None:
      out[row] = base
      continue
    _link_base(row_workdir(workdir, fold, "real_only"), row_workdir(workdir, fold, row))
    out[row] = run(row)
  return out


def row_accuracy(row: str, summary: dict) -> float:
  """Held-out accuracy of a row: the real-only R for ``real_only``, the joint R otherwise."""
  return summary["eval/real/acc"] if row == "real_only" else summary["eval/joint/acc"]


def pooled_confusion(row: str, summaries: list[dict]) -> np.ndarray:
  """Sum over folds of the row's confusion matrix."""
  name = "r_real" if row == "real_only" else "joint"
  total = None
  for s in summaries:
    with open(s["paths"][f"confusion_{name}"].replace(".png", ".json")) as f:
      cm = np.asarray(json.load(f)["rows_true_columns_predicted"])
    total = cm if total is None else total + cm
  return total


def collect_finished(config, workdir: str, ablation: bool) -> dict[int, dict[str, dict]]:
  """{fold: {row: summary}} of every finished fold and row under ``workdir``.

  A row is finished when its ``summary.json`` exists.  Its ``config.json`` must be the one this
  ``config`` gives that fold and row (a run of another configuration in the same workdir is an
  error naming the file, never silently mixed into the table).
  """
  rows = tuple(ABLATION_ROWS) if ablation else ("method",)
  out: dict[int, dict[str, dict]] = {}
  for fold in range(config.data.num_folds):
    for row in rows:
      d = row_workdir(workdir, fold, row)
      if not os.path.isfile(os.path.join(d, "summary.json")):
        continue
      with open(os.path.join(d, "config.json")) as f:
        saved = json.load(f)
      want = json.loads(json.dumps(row_config(config, fold, row).to_dict()))
      if saved != want:
        diff = sorted(_diff(saved, want))
        raise ValueError(f"{os.path.join(d, 'config.json')} was run with another configuration "
                         f"(differs in {diff[:8]}); use another --workdir")
      with open(os.path.join(d, "summary.json")) as f:
        out.setdefault(fold, {})[row] = json.load(f)
  return out


def _diff(a, b, prefix: str = "") -> list[str]:
  """Dotted paths where two nested dicts differ."""
  if not (isinstance(a, dict) and isinstance(b, dict)):
    return [] if a == b else [prefix.rstrip(".")]
  out = []
  for k in set(a) | set(b):
    out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
  return out


def aggregate(results: dict[int, dict[str, dict]]) -> dict[str, dict]:
  """Per row (over the folds where it ran): fold accuracies, mean, std (population std over
  folds), pooled confusion and per-class accuracy."""
  order = list(ABLATION_ROWS) + ["method"]
  rows = sorted({r for v in results.values() for r in v}, key=order.index)
  out = {}
  for row in rows:
    folds = sorted(f for f in results if row in results[f])
    summaries = [results[f][row] for f in folds]
    accs = [row_accuracy(row, s) for s in summaries]
    cm = pooled_confusion(row, summaries)
    out[row] = {"folds": folds, "acc": accs, "mean": float(np.mean(accs)),
                "std": float(np.std(accs)), "confusion": cm.tolist(),
                "per_class_accuracy": evaluation.per_class_accuracy(cm).tolist()}
  return out


def markdown_table(agg: dict[str, dict], title: str, command: str) -> str:
  """The rows as a Markdown table of mean +- std held-out accuracy over folds."""
  lines = [f"### {title}", "", f"`{command}`", "", "| row | accuracy (mean +- std) | folds |",
           "| --- | --- | --- |"]
  for row, a in agg.items():
    lines.append(f"| {row} | {100 * a['mean']:.1f} +- {100 * a['std']:.1f} % | {len(a['folds'])} |")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from jfesgan import metrics
  logging.set_verbosity(logging.INFO)
  metrics.quiet_orbax_logs()
  config = FLAGS.config
  folds = ([int(f) for f in FLAGS.folds.split(",")] if FLAGS.folds
           else list(range(config.data.num_folds)))
  bad = [f for f in folds if not 0 <= f < config.data.num_folds]
  if bad:
    raise app.UsageError(f"--folds {bad} not in [0, data.num_folds={config.data.num_folds})")
  rows = tuple(FLAGS.rows.split(",")) if FLAGS.rows else tuple(ABLATION_ROWS)
  unknown = [r for r in rows if r not in ABLATION_ROWS]
  if unknown:
    raise app.UsageError(f"--rows {unknown} unknown; rows are {tuple(ABLATION_ROWS)}")
  for f in folds:
    run_fold(config, FLAGS.workdir, f, FLAGS.ablation, rows)
  # The table covers every finished fold and row in the workdir, not only this call's.
  agg = aggregate(collect_finished(config, FLAGS.workdir, FLAGS.ablation))
  name = "ablation" if FLAGS.ablation else "crossval"
  command = "python -m jfesgan.crossval " + " ".join(sys.argv[1:])
  table = markdown_table(agg, f"{name}: held-out accuracy, folds by subject", command)
  with open(os.path.join(FLAGS.workdir, f"{name}.json"), "w") as f:
    json.dump(agg, f, indent=2)
  with open(os.path.join(FLAGS.workdir, f"{name}.md"), "w") as f:
    f.write(table)
  print(table, flush=True)


if __name__ == "__main__":
  app.run(main)
