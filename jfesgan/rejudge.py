"""A finished run's generators scored by an independent judge, after the fact.

  python -m jfesgan.rejudge --workdir runs/ck48/fold_0 --judge runs/judge_fer2013 \\
      [--data_dir DIR] [--manual_dir DIR] [--out FILE]

The scores are the ones a run given ``--config.eval.judge`` writes to its summary
(``judge/real_acc``, ``judge/<stage>/acc_t``, ``acc_p`` and per class; :mod:`jfesgan.judge`),
computed the same way from the run's own held-out data, seed and saved generators (g_ema of every
finished generator stage, ``fesgan`` and ``joint``; a stage the run took from ``--start_from`` is
read from that workdir), so a run scored here and the same run trained with that judge agree
exactly.  For runs trained before a judge existed, or to compare runs under one judge when the
judge is replaced.  Nothing is trained and the run is not changed: the scores go to
``<workdir>/rejudge_<judge name>.json`` (or ``--out``) and are printed.  ``--data_dir`` and
``--manual_dir`` say where the run's database is when it has moved since the run.
"""

from __future__ import annotations

import json
import os

import numpy as np

from jfesgan import evaluation, stages, trained
from jfesgan import judge as judge_lib
from jfesgan.data import pipeline
from jfesgan.models import build_models


def generator_workdir(workdir: str, summary: dict, stage: str) -> str:
  """Where the run in ``workdir`` keeps ``stage``'s checkpoint: its own workdir, or the one it
  took the finished stage from (``summary["start_from"]``)."""
  return summary.get("start_from", {}).get(stage, workdir)


def rejudge(workdir: str, judge_dir: str, *, data_dir: str | None = None,
            manual_dir: str | None = None) -> dict[str, float]:
  """The judge's scores of every finished generator of the run in ``workdir``."""
  workdir = os.path.abspath(workdir)
  config, class_names = trained.read_run(workdir)
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  judge = judge_lib.load(judge_dir)
  plan = stages.select(config)
  names = [s.name for s in plan if s.generator is not None]
  if not names:
    raise ValueError(f"{workdir}: the run has no generator stage (its stages were "
                     f"{[s.name for s in plan]})")
  data_cfg = config.data.copy_and_resolve_references()
  if data_dir:
    data_cfg.data_dir = data_dir
  if manual_dir:
    data_cfg.manual_dir = manual_dir
  _, test = pipeline.train_test(data_cfg)
  if tuple(test.class_names) != class_names:
    raise ValueError(f"{workdir}: the held-out data read now has classes {test.class_names}, the "
                     f"run had {class_names} (config.data changed?)")
  models = build_models(config, len(class_names), num_subjects=1)  # only G is applied
  ev = evaluation.Evaluator(models, int(config.eval.batch_size))
  scores: dict[str, float] = {}
  for name in names:
    tree = trained.restore_finished(generator_workdir(workdir, summary, name), name, config)
    scores.update(evaluation.judge_synthesis(
        ev, judge, tree["g_ema"], test, rng=np.random.default_rng([config.seed, stages.EVAL_STREAM]),
        num_prior_samples=int(config.eval.num_prior_samples), prefix=f"judge/{name}"))
  return scores


def main(argv):
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from jfesgan import cli  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.quiet_tool()
  f = flags.FLAGS
  scores = rejudge(f.workdir, f.judge, data_dir=f.data_dir, manual_dir=f.manual_dir)
  judge_dir = os.path.abspath(f.judge)
  out = f.out or os.path.join(os.path.abspath(f.workdir),
                              f"rejudge_{os.path.basename(judge_dir.rstrip('/'))}.json")
  with open(out, "w") as fh:
    json.dump({"workdir": os.path.abspath(f.workdir), "judge": judge_dir, "scores": scores}, fh,
              indent=2)
  print(f"{os.path.abspath(f.workdir)} judged by {judge_dir}:")
  for k, v in sorted(scores.items()):
    print(f"  {k:32s} {v:.4f}")
  print(f"  written to {out}", flush=True)


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "Workdir of the finished run to score.", required=True)
  flags.DEFINE_string("judge", None, "Workdir of the judge: a finished real-only run on another "
                      "database.", required=True)
  flags.DEFINE_string("data_dir", None, "Where the run's TFDS dataset is now (default: as run).")
  flags.DEFINE_string("manual_dir", None, "Where the run's database files are now (default: as "
                      "run).")
  flags.DEFINE_string("out", "", "JSON file (default: <workdir>/rejudge_<judge name>.json).")
  app.run(main)
