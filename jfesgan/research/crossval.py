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
from jfesgan.evaluation.summary import JUDGE_FAMILIES, JUDGE_FINGERPRINTS
from jfesgan.models import R_ARCHS
from jfesgan.research import rejudge as rejudge_lib
from jfesgan.research import stats
from jfesgan.run import host, metrics, provenance
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


def seed_dir(workdir: str, seed: int, seeds: tuple[int, ...] | None) -> str:
  """The root of seed ``seed``'s folds: ``<workdir>/seed_<s>`` when the command runs several seeds
  (``--seeds``), else ``workdir`` itself (one seed, ``config.seed``)."""
  return workdir if seeds is None else os.path.join(workdir, f"seed_{seed}")


def seed_list(config, seeds: tuple[int, ...] | None) -> tuple[int, ...]:
  """The root seeds a command covers: ``seeds``, or ``config.seed`` alone."""
  return (int(config.seed),) if seeds is None else seeds


def seeded(config, seed: int):
  """``config`` with ``seed`` as its root seed (every stage of the fold trains with it: each seed
  trains its own stage 1)."""
  cfg = config.copy_and_resolve_references()
  cfg.seed = seed
  return cfg


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


def collect_finished(config, workdir: str, ablation: bool,
                     seeds: tuple[int, ...] | None = None) -> dict[tuple[int, int], dict[str, dict]]:
  """{(seed, fold): {row: summary}} of every finished fold and row under ``workdir``: of
  ``config.seed`` in ``workdir`` itself, or of each of ``seeds`` in ``seed_<s>/``.  Each summary
  also names the run's folder (``RUN_DIR``).

  A row is finished when its ``summary.json`` exists.  Its ``config.json`` must agree with the
  one this ``config`` gives that seed, fold and row on every field its stages depend on (a run of
  another configuration in the same workdir is an error naming the file, never silently mixed
  into the table; the base run does not depend on ``config.joint``).
  """
  rows = tuple(ABLATION_ROWS) if ablation else ("method",)
  out: dict[tuple[int, int], dict[str, dict]] = {}
  for seed in seed_list(config, seeds):
    root, cfg_seed = seed_dir(workdir, seed, seeds), seeded(config, seed)
    for fold in range(config.data.num_folds):
      for row in rows:
        d = row_workdir(root, fold, row)
        if not os.path.isfile(os.path.join(d, "summary.json")):
          continue
        saved = workdir_lib.read_json(os.path.join(d, "config.json"))
        cfg = row_config(cfg_seed, fold, row)
        want = json.loads(json.dumps(cfg.to_dict()))
        diff = diff_sections(saved, want,
                             stages.run_sections([st.name for st in stages.select(cfg)]))
        if saved.get("seed") != want["seed"]:
          diff = ["seed"] + diff
        if diff:
          raise ValueError(f"{os.path.join(d, 'config.json')} was run with another configuration "
                           f"(differs in {diff[:8]}); use another --workdir")
        summary = workdir_lib.read_summary(d)
        summary[RUN_DIR] = d
        stage = row_stage(row, summary)
        if ((stage == stages.JOINT.name and cfg.joint.intra_mode != "none")
            or (stage == stages.REAL.name and cfg.real.get("intra_weight", 0.0))):
          summary[INTRA_CURVE] = intra_curve(d, stage)
        out.setdefault((seed, fold), {})[row] = summary
  return out


def intra_curve(run_dir: str, stage: str = stages.JOINT.name) -> list[list[float]]:
  """[step, value] of the intra-class loss that ``stage`` of the run in ``run_dir`` logged (one
  batch's value every ``log_every`` steps: ``r/intra`` in the joint stage, ``real/intra`` in a
  real-only R with ``real.intra_weight``), in step order."""
  key = "r/intra" if stage == stages.JOINT.name else f"{stage}/intra"
  records = metrics.read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
  return sorted([int(r["step"]), float(r[key])] for r in records
                if r.get("stage") == stage and key in r)


SYNTHESIS_PREFIXES = ("synth/", *(f"{judge_lib.key_root(f)}/" for f in R_ARCHS), "xdb/")
# A summary's (added) key: the logged intra-class loss of a row that has one (joint or control).
INTRA_CURVE = "intra_curve"
# A summary's (added) key: the folder the run is in.
RUN_DIR = "run_dir"


def cross_database(results: dict[tuple[int, int], dict[str, dict]], test_config) -> str:
  """Tests every finished row's recogniser on another database (``jfesgan.evaluate``: classes
  matched by name, the database's official test split or all of it) and adds its accuracy and
  mean per-class accuracy to the row's summary in ``results`` as ``xdb/<database>/acc`` and
  ``xdb/<database>/mean_class_acc``.  Each row's scores are kept in its run's folder
  (``RUN_DIR``) as ``evaluate_<database>.json`` and read back from there by later calls.
  Returns the database's name."""
  name, data = test_config.data.name, None
  for _, rows in sorted(results.items()):
    for row, summary in rows.items():
      stage = ABLATION_ROWS[row][0] if row in ABLATION_ROWS else None
      d = summary[RUN_DIR]
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


def rejudged(results: dict[tuple[int, int], dict[str, dict]], judge: str) -> str:
  """Replaces every finished row's ``judge/*`` scores in ``results`` by those of ``judge`` (one
  workdir, or several comma-separated: an ensemble), computed from the row's saved generators
  (:func:`jfesgan.rejudge.rejudge`: exactly what a run trained with that judge reports).  Each
  row's scores are kept in its run's folder as ``rejudge_<judge names>.json`` (the file
  ``jfesgan rejudge`` writes) and read back from there by later calls with the same
  judges.  A row without a generator keeps no ``judge/*`` scores.  Returns the judges' names."""
  dirs = ",".join(judge_lib.workdirs(judge, "--rejudge"))
  # The judges, and their fingerprints and families, loaded once if a row needs judging.
  panel = now = None
  for _, rows in sorted(results.items()):
    for summary in rows.values():
      for key in [k for k in summary if judge_lib.is_judge_key(k)]:
        del summary[key]
      summary.pop(JUDGE_FINGERPRINTS, None)
      summary.pop(JUDGE_FAMILIES, None)
      d = summary[RUN_DIR]
      if not rejudge_lib.has_generator(d):
        continue
      kept = rejudge_lib.saved_record(d, dirs)
      if kept is None:
        if panel is None:
          panel = judge_lib.load(dirs)
          now = judge_lib.provenance(panel)
        kept = {"scores": rejudge_lib.rejudge(d, panel), "fingerprints": now[0],
                "families": now[1]}
        rejudge_lib.save(d, dirs, kept["scores"], *now)
      summary.update(kept["scores"])
      if kept.get("fingerprints"):
        summary[JUDGE_FINGERPRINTS] = kept["fingerprints"]
      if kept.get("families"):
        summary[JUDGE_FAMILIES] = kept["families"]
  return judge_lib.name(dirs)


# The control every row is also compared with: what the intra-class loss does without synthesis.
CONTROL = "real_intra"
# The comparisons of the tables: (key in a row's aggregate, reference row, in words).
COMPARISONS = (("minus_real", "real", "real only"), ("minus_control", CONTROL, "the control"))


def _distinct(dicts) -> list[dict]:
  """The different dicts among ``dicts`` (e.g. the judges' fingerprints of several runs), in a
  fixed order."""
  return [json.loads(d) for d in sorted({json.dumps(x, sort_keys=True) for x in dicts})]


def run_label(key: tuple[int, int], one_seed: bool) -> str:
  """A run's name in the tables: its fold (one seed), or ``<seed>/<fold>``."""
  return str(key[1]) if one_seed else f"{key[0]}/{key[1]}"


def _class_accuracies(row: str, summary: dict) -> np.ndarray:
  """Per-class accuracy of one run's recogniser (nan for a class with no held-out image)."""
  cm = np.asarray(summary["confusion"][row_stage(row, summary)], np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.diag(cm) / cm.sum(1)


def aggregate(results: dict[tuple[int, int], dict[str, dict]]) -> dict[str, dict]:
  """Per row, over the (seed, fold) runs where it ran: each run's accuracy (``runs``, ``acc``),
  their mean and population std, the mean of each fold over its seeds and of each seed over its
  folds, pooled confusion and per-class accuracy, the synthesis scores of each run (``synth/*``,
  ``judge/*``, ``xdb/*``), the logged intra-class loss of rows that have one (``intra_curve``),
  and the judges' fingerprints the runs recorded.  With one seed, ``folds`` lists each run's fold
  in the order of ``acc``.

  Every row is compared, paired on the runs both have, with real only (``minus_real``) and with
  the control ``real_intra`` (``minus_control``) where they ran: :func:`stats.paired_difference`
  (the mean, its 95 % interval over folds with seeds averaged within each fold, the fold-wise
  sign-flip p), the p-value Holm-adjusted across the rows of that comparison (``p_holm``), the
  verdict (:func:`stats.verdict`: better, worse, equivalent within +-2 points, or undecided), and
  the same per class (``per_class``: {class index: mean, interval, p, Holm p across classes}).
  """
  order = list(ABLATION_ROWS) + ["method"]
  rows = sorted({r for v in results.values() for r in v}, key=order.index)
  one_seed = len({seed for seed, _ in results}) <= 1
  acc = {row: {k: row_accuracy(row, v[row]) for k, v in results.items() if row in v}
         for row in rows}
  out = {}
  for row in rows:
    keys = sorted(acc[row])
    summaries = [results[k][row] for k in keys]
    accs = [acc[row][k] for k in keys]
    cm = pooled_confusion(row, summaries)
    folds = sorted({f for _, f in keys})
    seeds = sorted({s for s, _ in keys})
    a = {"runs": [list(k) for k in keys], "seeds": seeds,
         "folds": [f for _, f in keys] if one_seed else folds, "acc": accs,
         "mean": float(np.mean(accs)), "std": float(np.std(accs)),
         "fold_mean": {str(f): float(np.mean([acc[row][k] for k in keys if k[1] == f]))
                       for f in folds},
         "seed_mean": {str(sd): float(np.mean([acc[row][k] for k in keys if k[0] == sd]))
                       for sd in seeds},
         "confusion": cm.tolist(),
         "per_class_accuracy": scores_lib.per_class_accuracy(cm).tolist(),
         "synthesis": {run_label(k, one_seed): {n: v for n, v in sm.items()
                                                 if n.startswith(SYNTHESIS_PREFIXES)}
                       for k, sm in zip(keys, summaries)}}
    curves = {run_label(k, one_seed): sm[INTRA_CURVE] for k, sm in zip(keys, summaries)
              if INTRA_CURVE in sm}
    if curves:
      a["intra_curve"] = curves
    prints = _distinct(sm[JUDGE_FINGERPRINTS] for sm in summaries if JUDGE_FINGERPRINTS in sm)
    if prints:
      a["judge_fingerprints"] = prints
    fams = _distinct(sm[JUDGE_FAMILIES] for sm in summaries if JUDGE_FAMILIES in sm)
    if fams:
      a["judge_families"] = fams
    for name, ref, _ in COMPARISONS:
      if row == ref or ref not in acc:
        continue
      c = stats.paired_difference(acc[row], acc[ref])
      if c is None:
        continue
      both = [tuple(k) for k in c["pairs"]]
      mine = {k: _class_accuracies(row, results[k][row]) for k in both}
      theirs = {k: _class_accuracies(ref, results[k][ref]) for k in both}
      per_class = {}
      for j in range(len(cm)):
        ok = [k for k in both if not (np.isnan(mine[k][j]) or np.isnan(theirs[k][j]))]
        pc = stats.paired_difference({k: float(mine[k][j]) for k in ok},
                                     {k: float(theirs[k][j]) for k in ok})
        if pc is not None:
          per_class[str(j)] = {f: pc[f] for f in ("mean", "ci95", "p_sign_flip", "of")}
      adjusted = stats.holm({j: v["p_sign_flip"] for j, v in per_class.items()})
      for j, v in per_class.items():
        v["p_holm"] = adjusted[j]
      c["per_class"] = per_class
      a[name] = c
    out[row] = a
  for name, _, _ in COMPARISONS:
    family = {row: a[name]["p_sign_flip"] for row, a in out.items() if name in a}
    for row, p in stats.holm(family).items():
      out[row][name]["p_holm"] = p
      out[row][name]["verdict"] = stats.verdict(out[row][name])
  return out


def _headline(key: str) -> bool:
  """Whether a synthesis score is a headline one (not a per-class breakdown such as
  ``judge/fesgan/t/happy`` or ``judge/real/happy``)."""
  parts = key.split("/")
  return (len(parts) == 2 or (len(parts) == 3 and parts[2] in ("acc_t", "acc_p"))
          or (parts[0] == "xdb" and len(parts) == 3))


def _points(v: float) -> str:
  return f"{100 * v:+.1f}"


def markdown_table(agg: dict[str, dict], title: str, command: str,
                   class_names: list[str] | None = None, provenance_line: str = "") -> str:
  """The rows as Markdown: each row's held-out accuracy (mean +- std over its runs, per fold over
  seeds, per seed over folds); each row's paired difference from real only and from the control
  with its 95 % interval, sign-flip and Holm p and verdict; the per-class differences whose
  interval excludes 0; pooled per-class accuracy (with ``class_names``); synthesis scores; the
  intra-class loss curves."""
  lines = [f"### {title}", "", f"`{command}`", ""] + ([provenance_line, ""] if provenance_line else [])
  lines += ["| row | accuracy (mean +- std over runs) | runs | per fold (%, mean over seeds) | "
            "per seed (%, mean over folds) |", "| --- | --- | --- | --- | --- |"]
  for row, a in agg.items():
    per_fold = " ".join(f"{f}:{100 * v:.1f}" for f, v in a["fold_mean"].items())
    per_seed = " ".join(f"{sd}:{100 * v:.1f}" for sd, v in a["seed_mean"].items())
    runs = f"{len(a['acc'])} ({len(a['fold_mean'])} folds x {len(a['seeds'])} seeds)"
    lines.append(f"| {ROW_TITLES[row]} (`{row}`) | {100 * a['mean']:.1f} +- {100 * a['std']:.1f} % "
                 f"| {runs} | {per_fold} | {per_seed} |")
  compared = [(row, name, words) for row, a in agg.items() for name, _, words in COMPARISONS
              if name in a]
  if compared:
    lines += ["", "Paired differences in points of accuracy, on the runs both rows have: the mean "
              "of the folds' means over seeds, its 95 % interval (Student t over folds, seeds "
              "averaged within each fold), the runs where the row is better / worse, the "
              "fold-wise sign-flip p and its Holm adjustment across the rows, and the verdict "
              f"(equivalent: the interval within +-{100 * stats.MARGIN:g} points; undecided: "
              "neither a difference nor equivalence shown):", "",
              "| row | against | mean | 95 % interval | better / worse of runs | seed sd | "
              "sign-flip p | Holm p | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row, name, words in compared:
      c = agg[row][name]
      lo, hi = c["ci95"]
      interval = "" if lo is None else f"[{_points(lo)}, {_points(hi)}]"
      seed_sd = "" if c["seed_sd"] is None else f"{100 * c['seed_sd']:.1f}"
      lines.append(f"| `{row}` | {words} | {_points(c['mean'])} | {interval} | {c['better']} / "
                   f"{c['worse']} of {c['of']} | {seed_sd} | {c['p_sign_flip']:.3f} | "
                   f"{c['p_holm']:.3f} | {c['verdict']} |")
    real_ones = [(row, words, j, v) for row, name, words in compared
                 for j, v in agg[row][name]["per_class"].items()
                 if v["ci95"][0] is not None and (v["ci95"][0] > 0 or v["ci95"][1] < 0)]
    lines += ["", "Per-class differences whose 95 % interval excludes 0 (Holm p across the "
              "classes of the row):", ""]
    if real_ones:
      lines += ["| row | against | class | mean | 95 % interval | Holm p |",
                "| --- | --- | --- | --- | --- | --- |"]
      for row, words, j, v in real_ones:
        cls = class_names[int(j)] if class_names else j
        lines.append(f"| `{row}` | {words} | {cls} | {_points(v['mean'])} | "
                     f"[{_points(v['ci95'][0])}, {_points(v['ci95'][1])}] | {v['p_holm']:.3f} |")
    else:
      lines.append("None: no class's difference is shown either way.")
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
              "each row's runs:", "",
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
              "value, mean over runs, and on how many runs the last is below the first:", "",
              "| row | first | last | fell on |", "| --- | --- | --- | --- |"]
    for row, curves in intra.items():
      logged = [c for c in curves.values() if c]
      missing = len(curves) - len(logged)
      first = f"{np.mean([c[0][1] for c in logged]):.3g}" if logged else ""
      last = f"{np.mean([c[-1][1] for c in logged]):.3g}" if logged else ""
      fell = sum(c[-1][1] < c[0][1] for c in logged)
      lines.append(f"| `{row}` | {first} | {last} | {fell} of {len(logged)} runs"
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
  seeds = tuple(int(x) for x in flags_.seeds.split(",")) if flags_.seeds else None
  if seeds is not None and len(set(seeds)) != len(seeds):
    raise app.UsageError(f"--seeds {flags_.seeds} names a seed twice")
  command = "jfesgan crossval " + " ".join(sys.argv[1:])

  written: list[str] = []

  def tables() -> None:
    written.append(write_tables(config, flags_.workdir, flags_.ablation, command, flags_.out,
                                flags_.evaluate_on, flags_.rejudge, seeds))

  if not flags_.table_only:
    run_all(config, flags_.workdir, folds, seeds, flags_.ablation, rows, after_fold=tables)
  if not written:  # --table_only, or no fold to run
    tables()
  print(written[-1], flush=True)


def run_all(config, workdir: str, folds: list[int], seeds: tuple[int, ...] | None, ablation: bool,
            rows: tuple[str, ...] = tuple(ABLATION_ROWS), after_fold=lambda: None) -> None:
  """Every fold of every seed (``None``: ``config.seed`` alone, in ``workdir``), seed by seed so
  that the first seed covers every fold first, calling ``after_fold()`` after each (the command
  rewrites its tables there: whenever it is stopped, what finished is in a table).  Each seed
  trains its own stages 0-1 in ``seed_<s>/fold_<k>``; finished runs are read back, interrupted
  ones resume."""
  for seed in seed_list(config, seeds):
    for f in folds:
      run_fold(seeded(config, seed), seed_dir(workdir, seed, seeds), f, ablation, rows)
      after_fold()


def write_tables(config, workdir: str, ablation: bool, command: str, out: str = "",
                 evaluate_on=None, judge: str = "", seeds: tuple[int, ...] | None = None) -> str:
  """Writes ``ablation.{json,md}`` (or ``crossval.*``) of every finished seed, fold and row under
  ``workdir`` (not only one call's) to ``workdir`` and ``out``, each row's recogniser also tested
  on the database of config ``evaluate_on`` if given (:func:`cross_database`), and its generators
  read by ``judge`` instead of the runs' own judge if given (:func:`rejudged`); returns the
  Markdown table.  The files record the command, the commit of the code that wrote them and the
  content fingerprints of the judges that read the generators (as each run recorded them)."""
  name = "ablation" if ablation else "crossval"
  results = collect_finished(config, workdir, ablation, seeds)
  if evaluate_on is not None:
    cross_database(results, evaluate_on)
  if judge:
    rejudged(results, judge)
  agg = aggregate(results)
  class_names = next((sm["class_names"] for v in results.values() for sm in v.values()
                      if "class_names" in sm), None)
  made_at = provenance.commit()
  judged_by = judge or config.eval.judge
  prints = _distinct(f for a in agg.values() for f in a.get("judge_fingerprints", []))
  fams = _distinct(f for a in agg.values() for f in a.get("judge_families", []))
  line = f"Commit `{made_at}`."
  if judged_by:
    line += (f" Judge `{judge_lib.name(judged_by)}`, weights "
             + ("; ".join(rejudge_lib.describe_fingerprints(f) for f in prints)
                if prints else "not fingerprinted (runs judged before fingerprints were kept)")
             + (" (MORE THAN ONE SET: the runs were judged by different networks)"
                if len(prints) > 1 else "") + "."
             + (" Families: " + "; ".join(rejudge_lib.describe_families(f) for f in fams)
                + " (trunk: judge/*, the design of D_img, Phi and R; residual: judge_residual/*)."
                if fams else ""))
  table = markdown_table(agg, f"{name}: held-out accuracy, folds by subject", command, class_names,
                         line)
  record = {"command": command, "commit": made_at, "class_names": class_names,
            "judge": judged_by, "judge_fingerprints": prints, "judge_families": fams, "rows": agg}
  if seeds is None:
    record["seed"] = int(config.seed)
  else:
    record["seeds"] = list(seeds)
  for out_dir in dict.fromkeys([workdir] + ([out] if out else [])):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
      json.dump(record, f, indent=2)
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
  flags.DEFINE_string("seeds", "", "Comma-separated root seeds (e.g. 0,1,2): each trains every "
                      "row of every fold, its own stage 1 included, in <workdir>/seed_<s>/, seed "
                      "by seed; the tables pair rows on (seed, fold).  Default: config.seed alone, "
                      "in <workdir> itself.")
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
