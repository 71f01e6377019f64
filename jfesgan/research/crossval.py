"""Subject-independent k-fold cross-validation and the ablation table.

  jfesgan crossval --config configs/joint.py --workdir runs/cv [--folds 0,1,2]
  jfesgan crossval --config configs/joint.py --workdir runs/ablation --ablation

Each fold holds out one fold of subjects (``data.num_folds`` folds, ``data.fold_seed``) and runs
the configured stages in ``<workdir>/fold_<k>``; a fold that finished is read back, an interrupted
one resumes from its checkpoints, so the command can be re-run until it is complete.  With
``--ablation`` every fold trains stages ``phi``, ``fesgan`` and ``real`` once in ``fold_<k>``, and
each other row trains only its ``joint`` stage in ``fold_<k>/<row>``, starting from the fold's
finished stages 0-1 (``train_and_evaluate(..., start_from=fold_<k>)``), under the same budget:

1. ``real``: R on real images alone (the stage ``real``);
2. ``offline_aug``: R on real + images of the frozen stage-1 generator;
3. ``joint_no_intra``: joint learning without the intra-class loss;
4. ``joint_plain``: joint + intra-class loss with ordinary back-propagation;
5. ``joint_rdbp``: joint + intra-class loss with RDBP (the full method);
6. ``rdbp_no_new_ids``: the full method with translations x_t only (no new identities);
7. ``real_intra``, a control beyond METHOD.md's rows: R on real images alone with the
   intra-class loss at the joint rows' weight (a centre loss), trained in ``fold_<k>/real_intra``
   without stages 0-1: what the loss does with no synthetic image.

Outputs ``ablation.json`` / ``crossval.json`` (per row: per-fold accuracies, mean +- std over
folds, pooled confusion and per-class accuracy, each fold's synthesis scores, and the paired
difference from real only on the same folds) and a Markdown table of the same with the exact
command; ``--out results/ck48`` writes them there too.  The table covers every finished
fold and row in the workdir, so rows can be run on different folds by several calls (``--rows``,
``--folds``); a finished row run with another configuration is an error, never mixed in.
``--table_only`` writes the tables of what is finished and trains nothing; ``--rejudge A,B,C``
reads every row's generators with that judge (or ensemble) for the tables' ``judge/*`` scores
instead of the runs' own (:mod:`jfesgan.rejudge`); ``--evaluate_on
configs/fer2013.py`` also tests every finished row's recogniser on that database (classes
matched by name) and adds its accuracy to the tables (``xdb/<database>/*``).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from jfesgan import stages, train
from jfesgan.evaluation import judge as judge_lib
from jfesgan.evaluation import scores as scores_lib
from jfesgan.evaluation.restored import RestoredRecogniser
from jfesgan.research import rejudge as rejudge_lib
from jfesgan.research.stats import sign_flip_p
from jfesgan.run import host, metrics
from jfesgan.run import workdir as workdir_lib
from jfesgan.run.flags import parse_flags
from jfesgan.run.workdir import diff_sections
from jfesgan.tools import evaluate as evaluate_lib

# Row -> (the stage whose recogniser it reports, overrides of config.joint).  "method" is the
# configured method of a plain cross-validation (its joint R, or its last recogniser).
ABLATION_ROWS = {
    "real": (stages.REAL.name, None),
    "offline_aug": (stages.JOINT.name, dict(update_generator=False, generator_terms=False,
                                            intra_mode="none", train_discriminators=False)),
    "joint_no_intra": (stages.JOINT.name, dict(intra_mode="none")),
    "joint_plain": (stages.JOINT.name, dict(intra_mode="plain")),
    "joint_rdbp": (stages.JOINT.name, dict(intra_mode="rdbp")),
    "rdbp_no_new_ids": (stages.JOINT.name, dict(intra_mode="rdbp", synthetic=("translation",))),
    # A control, not a METHOD.md row: R on real images alone with the intra-class loss at the
    # joint rows' weight (``real.intra_weight = joint.intra_weight``), in a workdir of its own
    # (no stages 0-1): what the loss does without any synthetic image.
    "real_intra": (stages.REAL.name, None),
}
# Rows that train only ``real`` in their own workdir, from the fold's config with ``real``'s
# intra-class weight set to the joint rows'.
REAL_ONLY_ROWS = ("real_intra",)
ROW_TITLES = {
    "real": "(1) real only", "offline_aug": "(2) offline augmentation, frozen stage-1 generator",
    "joint_no_intra": "(3) joint, no intra-class loss", "joint_plain": "(4) joint + intra `plain`",
    "joint_rdbp": "(5) joint + intra `rdbp` (full method)",
    "rdbp_no_new_ids": "(6) full method without new identities",
    "real_intra": "(7) control: real only + intra-class loss", "method": "the configured method",
}
# The stages of the fold's base run, which every joint row starts from.
BASE_STAGES = (stages.PHI.name, stages.FESGAN.name, stages.REAL.name)


def fold_dir(workdir: str, fold: int) -> str:
  """The workdir of fold ``fold``: the configured method, or the ablation's base run."""
  return os.path.join(workdir, f"fold_{fold}")


def row_workdir(workdir: str, fold: int, row: str) -> str:
  """Where a row of a fold runs: the fold's own workdir for ``method`` and ``real`` (the base
  run), ``fold_<k>/<row>`` for the other ablation rows."""
  return fold_dir(workdir, fold) if row in ("method", "real") else os.path.join(
      fold_dir(workdir, fold), row)


def row_config(config, fold: int, row: str):
  """The configuration of a row of a fold (``method``: the configured method)."""
  cfg = config.copy_and_resolve_references()
  cfg.data.test_fold = fold
  if row == "method":
    return cfg
  _, overrides = ABLATION_ROWS[row]
  if row in REAL_ONLY_ROWS:
    cfg.stages = (stages.REAL.name,)
    cfg.real.intra_weight = cfg.joint.intra_weight
  elif overrides is None:
    cfg.stages = BASE_STAGES
  else:
    cfg.stages = stages.lineage(stages.JOINT.name)
    for k, v in overrides.items():
      cfg.joint[k] = v
  return cfg


def row_stage(row: str, summary: dict) -> str:
  """The stage whose recogniser a row reports: the row's own, or for ``method`` the joint R if
  it ran, else the last recogniser of the run."""
  if row != "method":
    return ABLATION_ROWS[row][0]
  ran = [s for s in stages.NAMES if s in summary["confusion"]]
  if not ran:
    raise ValueError("the configured method trains no recogniser: add 'real' or 'joint' to "
                     "config.stages")
  return ran[-1]


def run_fold(config, workdir: str, fold: int, ablation: bool,
             rows: tuple[str, ...] = tuple(ABLATION_ROWS)) -> dict[str, dict]:
  """Trains and evaluates one fold; returns {row: summary} (``rows`` of the ablation)."""

  def run(row: str, start_from: str | None = None) -> dict:
    return train.train_and_evaluate(row_config(config, fold, row), row_workdir(workdir, fold, row),
                                    start_from=start_from)

  if not ablation:
    return {"method": run("method")}
  base = run("real")  # Stages 0-1 and the real-only R, shared by every row.
  out = {}
  for row in rows:
    if row == "real":
      out[row] = base
    else:
      out[row] = run(row, start_from=None if row in REAL_ONLY_ROWS else fold_dir(workdir, fold))
  return out


def run_cross_database(config, test_on, workdir: str) -> dict:
  """Trains the configured stages on ALL of ``config``'s database and tests them on the database
  of config ``test_on`` (classes matched by name); writes ``<workdir>/cross_<db>/``.  Returns the
  held-out scores of every recogniser."""
  cfg = config.copy_and_resolve_references()
  cfg.data.protocol = "cross"
  cfg.data.test_on = test_on.data.copy_and_resolve_references()
  summary = train.train_and_evaluate(cfg, os.path.join(workdir, f"cross_{test_on.data.name}"))
  return {k: v for k, v in summary.items() if k.startswith("eval/")}


def row_accuracy(row: str, summary: dict) -> float:
  """Held-out accuracy of a row's recogniser."""
  return summary[f"eval/{row_stage(row, summary)}/acc"]


def pooled_confusion(row: str, summaries: list[dict]) -> np.ndarray:
  """Sum over folds of the row's confusion matrix."""
  return sum(np.asarray(s["confusion"][row_stage(row, s)]) for s in summaries)


def collect_finished(config, workdir: str, ablation: bool) -> dict[int, dict[str, dict]]:
  """{fold: {row: summary}} of every finished fold and row under ``workdir``.

  A row is finished when its ``summary.json`` exists.  Its ``config.json`` must agree with the
  one this ``config`` gives that fold and row on every field its stages depend on (a run of
  another configuration in the same workdir is an error naming the file, never silently mixed
  into the table; the base run does not depend on ``config.joint``).
  """
  rows = tuple(ABLATION_ROWS) if ablation else ("method",)
  out: dict[int, dict[str, dict]] = {}
  for fold in range(config.data.num_folds):
    for row in rows:
      d = row_workdir(workdir, fold, row)
      if not os.path.isfile(os.path.join(d, "summary.json")):
        continue
      saved = workdir_lib.read_json(os.path.join(d, "config.json"))
      cfg = row_config(config, fold, row)
      want = json.loads(json.dumps(cfg.to_dict()))
      diff = diff_sections(saved, want, stages.run_sections([st.name for st in stages.select(cfg)]))
      if diff:
        raise ValueError(f"{os.path.join(d, 'config.json')} was run with another configuration "
                         f"(differs in {diff[:8]}); use another --workdir")
      summary = workdir_lib.read_summary(d)
      stage = row_stage(row, summary)
      if ((stage == stages.JOINT.name and cfg.joint.intra_mode != "none")
          or (stage == stages.REAL.name and cfg.real.get("intra_weight", 0.0))):
        summary[INTRA_CURVE] = intra_curve(d, stage)
      out.setdefault(fold, {})[row] = summary
  return out


def intra_curve(run_dir: str, stage: str = stages.JOINT.name) -> list[list[float]]:
  """[step, value] of the intra-class loss that ``stage`` of the run in ``run_dir`` logged (one
  batch's value every ``log_every`` steps: ``r/intra`` in the joint stage, ``real/intra`` in a
  real-only R with ``real.intra_weight``), in step order."""
  key = "r/intra" if stage == stages.JOINT.name else f"{stage}/intra"
  records = metrics.read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
  return sorted([int(r["step"]), float(r[key])] for r in records
                if r.get("stage") == stage and key in r)


SYNTHESIS_PREFIXES = ("synth/", "judge/", "xdb/")
# A summary's (added) key: the logged intra-class loss of a row that has one (joint or control).
INTRA_CURVE = "intra_curve"


def cross_database(results: dict[int, dict[str, dict]], workdir: str, test_config) -> str:
  """Tests every finished row's recogniser on another database (``jfesgan.evaluate``: classes
  matched by name, the database's official test split or all of it) and adds its accuracy and
  mean per-class accuracy to the row's summary in ``results`` as ``xdb/<database>/acc`` and
  ``xdb/<database>/mean_class_acc``.  Each row's scores are kept in its workdir as
  ``evaluate_<database>.json`` and read back from there by later calls.  Returns the database's
  name."""
  name, data = test_config.data.name, None
  for fold, rows in sorted(results.items()):
    for row, summary in rows.items():
      stage = ABLATION_ROWS[row][0] if row in ABLATION_ROWS else None
      d = row_workdir(workdir, fold, row)
      path = os.path.join(d, f"evaluate_{name}.json")
      scores = None
      if os.path.isfile(path):
        scores = workdir_lib.read_json(path)
        if stage is not None and scores.get("stage") != stage:
          scores = None  # another recogniser of the same workdir was tested there
      if scores is None:
        if data is None:
          data = evaluate_lib.test_data(test_config.data)
        rec = RestoredRecogniser.load(d, stage)
        scores = evaluate_lib.evaluate(rec, data)
        scores.update(workdir=rec.workdir, stage=rec.stage, database=name)
        with open(path, "w") as f:
          json.dump(scores, f, indent=2)
      summary[f"xdb/{name}/acc"] = scores["accuracy"]
      summary[f"xdb/{name}/mean_class_acc"] = scores["mean_class_accuracy"]
  return name


def rejudged(results: dict[int, dict[str, dict]], workdir: str, judge: str) -> str:
  """Replaces every finished row's ``judge/*`` scores in ``results`` by those of ``judge`` (one
  workdir, or several comma-separated: an ensemble), computed from the row's saved generators
  (:func:`jfesgan.rejudge.rejudge`: exactly what a run trained with that judge reports).  Each
  row's scores are kept in its workdir as ``rejudge_<judge names>.json`` (the file
  ``jfesgan rejudge`` writes) and read back from there by later calls with the same
  judges.  A row without a generator keeps no ``judge/*`` scores.  Returns the judges' names."""
  dirs = ",".join(judge_lib.workdirs(judge, "--rejudge"))
  for fold, rows in sorted(results.items()):
    for row, summary in rows.items():
      for key in [k for k in summary if k.startswith("judge/")]:
        del summary[key]
      d = row_workdir(workdir, fold, row)
      if not rejudge_lib.has_generator(d):
        continue
      scores = rejudge_lib.saved(d, dirs)
      if scores is None:
        scores = rejudge_lib.rejudge(d, dirs)
        rejudge_lib.save(d, dirs, scores)
      summary.update(scores)
  return judge_lib.name(dirs)


def aggregate(results: dict[int, dict[str, dict]]) -> dict[str, dict]:
  """Per row (over the folds where it ran): fold accuracies, mean, std (population std over
  folds), pooled confusion and per-class accuracy, the synthesis scores of each fold's run
  (``synth/*``, ``judge/*``), the logged intra-class loss of rows that have one
  (``intra_curve``: {fold: [[step, value], ...]}), and -- for every row but ``real`` -- the
  paired comparison with
  ``real`` on the folds both ran: per-fold differences, their mean and std, and on how many folds
  the row is better."""
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
                "per_class_accuracy": scores_lib.per_class_accuracy(cm).tolist(),
                "synthesis": {str(f): {k: v for k, v in s.items()
                                       if k.startswith(SYNTHESIS_PREFIXES)}
                              for f, s in zip(folds, summaries)}}
    curves = {str(f): s[INTRA_CURVE] for f, s in zip(folds, summaries) if INTRA_CURVE in s}
    if curves:
      out[row]["intra_curve"] = curves
    if row != "real":
      both = [f for f in folds if "real" in results[f]]
      if both:
        diff = [row_accuracy(row, results[f][row]) - row_accuracy("real", results[f]["real"])
                for f in both]
        out[row]["minus_real"] = {"folds": both, "diff": diff, "mean": float(np.mean(diff)),
                                  "std": float(np.std(diff)),
                                  "better": int(sum(d > 0 for d in diff)),
                                  "worse": int(sum(d < 0 for d in diff)), "of": len(both),
                                  "p_sign_flip": sign_flip_p(diff)}
  return out


def _headline(key: str) -> bool:
  """Whether a synthesis score is a headline one (not a per-class breakdown such as
  ``judge/fesgan/t/happy`` or ``judge/real/happy``)."""
  parts = key.split("/")
  return (len(parts) == 2 or (len(parts) == 3 and parts[2] in ("acc_t", "acc_p"))
          or (parts[0] == "xdb" and len(parts) == 3))


def markdown_table(agg: dict[str, dict], title: str, command: str,
                   class_names: list[str] | None = None) -> str:
  """The rows as a Markdown table: mean +- std held-out accuracy over folds, the per-fold values,
  the paired difference from real only (with the folds better and worse, and the sign-flip test's
p-value); then pooled per-class accuracy (with ``class_names``)."""
  lines = [f"### {title}", "", f"`{command}`", "",
           "| row | accuracy (mean +- std) | folds | per fold (%) | minus real only, same folds |",
           "| --- | --- | --- | --- | --- |"]
  for row, a in agg.items():
    per_fold = " ".join(f"{f}:{100 * v:.1f}" for f, v in zip(a["folds"], a["acc"]))
    paired = a.get("minus_real")
    vs = (f"{100 * paired['mean']:+.1f} +- {100 * paired['std']:.1f} ({paired['better']} of "
          f"{paired['of']} better, {paired['worse']} worse; sign-flip p = "
          f"{paired['p_sign_flip']:.3f})" if paired else "")
    lines.append(f"| {ROW_TITLES[row]} (`{row}`) | {100 * a['mean']:.1f} +- {100 * a['std']:.1f} % "
                 f"| {len(a['folds'])} | {per_fold} | {vs} |")
  if class_names:
    lines += ["", "Pooled per-class accuracy (%):", "",
              "| row | " + " | ".join(class_names) + " |",
              "| --- |" + " --- |" * len(class_names)]
    for row, a in agg.items():
      lines.append(f"| `{row}` | " + " | ".join(f"{100 * v:.1f}" for v in a["per_class_accuracy"])
                   + " |")
  synth_keys = sorted({k for a in agg.values() for s in a["synthesis"].values() for k in s
                       if _headline(k)})
  if synth_keys:
    lines += ["", "Synthesis scores (and `xdb/*`: the recogniser on another database), mean over "
              "the folds of each row's runs:", "",
              "| row | " + " | ".join(f"`{k}`" for k in synth_keys) + " |",
              "| --- |" + " --- |" * len(synth_keys)]
    for row, a in agg.items():
      vals = [[s[k] for s in a["synthesis"].values() if k in s] for k in synth_keys]
      if any(vals):
        lines.append(f"| `{row}` | " + " | ".join(f"{np.mean(v):.3f}" if v else "" for v in vals)
                     + " |")
  intra = {row: a["intra_curve"] for row, a in agg.items() if "intra_curve" in a}
  if intra:
    lines += ["", "The intra-class loss while R trains (`r/intra`, or `real/intra` for the "
              "control: one batch's value every `log_every` steps): its first and last logged "
              "value, mean over folds, and on how many folds the last is below the first:", "",
              "| row | first | last | fell on |", "| --- | --- | --- | --- |"]
    for row, curves in intra.items():
      logged = [c for c in curves.values() if c]
      missing = len(curves) - len(logged)
      first = f"{np.mean([c[0][1] for c in logged]):.3g}" if logged else ""
      last = f"{np.mean([c[-1][1] for c in logged]):.3g}" if logged else ""
      fell = sum(c[-1][1] < c[0][1] for c in logged)
      lines.append(f"| `{row}` | {first} | {last} | {fell} of {len(logged)} folds"
                   + (f" ({missing} logged none)" if missing else "") + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  flags_ = flags.FLAGS
  host.enable_compilation_cache(flags_.compilation_cache)
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  metrics.quiet_orbax_logs()
  config = flags_.config
  folds = ([int(f) for f in flags_.folds.split(",")] if flags_.folds
           else list(range(config.data.num_folds)))
  bad = [f for f in folds if not 0 <= f < config.data.num_folds]
  if bad:
    raise app.UsageError(f"--folds {bad} not in [0, data.num_folds={config.data.num_folds})")
  rows = tuple(flags_.rows.split(",")) if flags_.rows else tuple(ABLATION_ROWS)
  unknown = [r for r in rows if r not in ABLATION_ROWS]
  if unknown:
    raise app.UsageError(f"--rows {unknown} unknown; rows are {tuple(ABLATION_ROWS)}")
  if flags_.test_on:
    print(json.dumps(run_cross_database(config, flags_.test_on, flags_.workdir), indent=1),
          flush=True)
    return
  if not flags_.table_only:
    for f in folds:
      run_fold(config, flags_.workdir, f, flags_.ablation, rows)
  command = "jfesgan crossval " + " ".join(sys.argv[1:])
  print(write_tables(config, flags_.workdir, flags_.ablation, command, flags_.out,
                     flags_.evaluate_on, flags_.rejudge), flush=True)


def write_tables(config, workdir: str, ablation: bool, command: str, out: str = "",
                 evaluate_on=None, judge: str = "") -> str:
  """Writes ``ablation.{json,md}`` (or ``crossval.*``) of every finished fold and row under
  ``workdir`` (not only one call's) to ``workdir`` and ``out``, each row's recogniser also tested
  on the database of config ``evaluate_on`` if given (:func:`cross_database`), and its generators
  read by ``judge`` instead of the runs' own judge if given (:func:`rejudged`); returns the
  Markdown table."""
  name = "ablation" if ablation else "crossval"
  results = collect_finished(config, workdir, ablation)
  if evaluate_on is not None:
    cross_database(results, workdir, evaluate_on)
  if judge:
    rejudged(results, workdir, judge)
  agg = aggregate(results)
  class_names = next((s["class_names"] for v in results.values() for s in v.values()
                      if "class_names" in s), None)
  table = markdown_table(agg, f"{name}: held-out accuracy, folds by subject", command, class_names)
  for out_dir in dict.fromkeys([workdir] + ([out] if out else [])):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
      json.dump({"command": command, "seed": int(config.seed), "class_names": class_names,
                 "judge": judge or config.eval.judge, "rows": agg}, f, indent=2)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
      f.write(table)
  return table


def define_flags() -> None:
  """The command's flags (defined only when it runs as a program, not when it is imported)."""
  config_flags.DEFINE_config_file("config", "configs/joint.py", "Configuration file.",
                                  lock_config=False)
  flags.DEFINE_string("workdir", None, "Root of the folds' workdirs (resumed if present).",
                      required=True)
  flags.DEFINE_string("folds", "", "Comma-separated folds to run (default: all data.num_folds).")
  flags.DEFINE_bool("ablation", False, "Run the six ablation rows instead of the configured method.")
  flags.DEFINE_string("rows", "", "With --ablation: comma-separated rows to run (default: all six).")
  flags.DEFINE_string("out", "", "Also write <name>.json and <name>.md here (e.g. results/ck48: "
                      "numbers only, no images, no data).")
  config_flags.DEFINE_config_file("evaluate_on", None, "Also test every finished row's "
                                  "recogniser on this config's database (cross-database; "
                                  "xdb/* in the tables).", lock_config=False)
  flags.DEFINE_string("rejudge", "", "Score every finished row's generators with this judge "
                      "(a workdir, or several comma-separated: an ensemble) instead of the runs' "
                      "own eval.judge, in the tables (jfesgan.rejudge; judge/* scores).")
  flags.DEFINE_bool("table_only", False, "Train nothing: write the tables of the folds and rows "
                    "already finished in --workdir (e.g. while another call is still training).")
  config_flags.DEFINE_config_file("test_on", None, "Cross-database protocol: train on all of "
                                  "--config's database, test on this config's database.",
                                  lock_config=False)
  flags.DEFINE_string("compilation_cache", "~/.cache/jfesgan/xla", "Directory of the persistent "
                      "XLA compilation cache ('' = off): every fold after the first skips compiling.")


def run() -> None:
  """``jfesgan crossval`` (and ``python -m jfesgan.research.crossval``)."""
  define_flags()
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
