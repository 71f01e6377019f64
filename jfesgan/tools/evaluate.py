"""Cross-database evaluation: a recogniser trained in one run, tested on another database.

  jfesgan evaluate --workdir runs/ck48 --config configs/fer2013.py \\
      --config.data.manual_dir=/data/fer2013 [--stage real]

The recogniser (the run's joint R by default, ``--stage real`` for the real-only R) is restored
from the workdir; the other database is read through its own builder and config (its crop
settings; images are resized and converted to what the recogniser was trained on).  Classes are
matched by name (``angry`` = ``anger``, ...); images of a class the recogniser does not know are
counted and reported, never silently dropped, and the accuracy is over the shared classes.  A
database with its own test split (FER2013, RAF-DB: ``data.protocol="official"``) is tested on it,
any other on every image.  Writes ``<workdir>/evaluate_<database>.json``.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from jfesgan.data import pipeline
from jfesgan.evaluation import scores as scores_lib
from jfesgan.evaluation.restored import RestoredRecogniser
from jfesgan.run import metrics
from jfesgan.run.flags import one_line_errors, parse_flags


def evaluate(recogniser: RestoredRecogniser, data: pipeline.ArrayDataset) -> dict:
  """The recogniser's scores on ``data`` (another database's images and labels)."""
  cmap = recogniser.class_map(data.class_names)
  known = cmap[data.label] >= 0
  mine = recogniser.class_names
  out = {"images": int(len(data)), "scored_images": int(known.sum()),
         "database_classes": list(data.class_names), "recogniser_classes": list(mine),
         "not_in_recogniser": {data.class_names[k]: int(np.sum(data.label == k))
                               for k in range(data.num_classes) if cmap[k] < 0},
         "not_in_database": [n for i, n in enumerate(mine) if i not in set(cmap.tolist())]}
  if not known.any():
    raise ValueError(f"no class of the database {data.class_names} is one of the recogniser's "
                     f"{mine}")
  preds = recogniser.predict(pipeline.to_float(data.image[known]))
  truth = cmap[data.label[known]]
  cm = scores_lib.confusion_matrix(truth, preds, len(mine))
  shared = sorted(set(cmap[cmap >= 0].tolist()))
  per_class = scores_lib.per_class_accuracy(cm)
  out.update(accuracy=float(np.mean(preds == truth)),
             mean_class_accuracy=float(np.mean([per_class[i] for i in shared])),
             per_class_accuracy={mine[i]: float(per_class[i]) for i in shared},
             confusion=cm.tolist(),
             predicted_share={n: float(np.mean(preds == i)) for i, n in enumerate(mine)})
  return out


def test_data(data_cfg) -> pipeline.ArrayDataset:
  """The images a database is tested on: its official test split, or every image."""
  if data_cfg.get("protocol", "folds") == "official":
    return pipeline.load_splits(data_cfg)[data_cfg.test_split]
  return pipeline.load(data_cfg)


def format_scores(name: str, scores: dict) -> str:
  lines = [f"{name}: accuracy {scores['accuracy']:.4f}, mean per-class "
           f"{scores['mean_class_accuracy']:.4f} on {scores['scored_images']} of "
           f"{scores['images']} images"]
  lines += [f"  {k:12s} {v:.3f}" for k, v in scores["per_class_accuracy"].items()]
  if scores["not_in_recogniser"]:
    lines.append(f"  not scored (classes the recogniser does not know): "
                 f"{scores['not_in_recogniser']}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  metrics.quiet_orbax_logs()
  f = flags.FLAGS
  rec = RestoredRecogniser.load(f.workdir, f.stage)
  data = test_data(f.config.data)
  scores = evaluate(rec, data)
  scores.update(workdir=rec.workdir, stage=rec.stage, database=f.config.data.name)
  path = os.path.join(rec.workdir, f"evaluate_{f.config.data.name}.json")
  with open(path, "w") as fh:
    json.dump(scores, fh, indent=2)
  print(format_scores(f"{rec.stage} R of {rec.workdir} on {f.config.data.name}", scores))
  print(f"  written to {path}", flush=True)


def run() -> None:
  """``jfesgan evaluate`` (and ``python -m jfesgan.tools.evaluate``)."""
  config_flags.DEFINE_config_file("config", None, "Config of the database to test on.",
                                  lock_config=False)
  flags.DEFINE_string("workdir", None, "Workdir of the trained run.", required=True)
  flags.DEFINE_string("stage", None, "RestoredRecogniser to test: 'joint' or 'real' (default: joint if "
                      "finished, else real).")
  app.run(one_line_errors(main), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
