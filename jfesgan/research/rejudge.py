"""A finished run's generators scored by an independent judge, after the fact.

  jfesgan rejudge --workdir runs/ck48/fold_0 [--workdir ...] --judge runs/judge_fer2013 \\
      [--data_dir DIR] [--manual_dir DIR] [--out results/FILE]

The scores are the ones a run given ``--config.eval.judge`` writes to its summary
(``judge/real_acc``, ``judge/<stage>/acc_t``, ``acc_p`` and per class; :mod:`jfesgan.judge`),
computed the same way from the run's own held-out data, seed and saved generators (g_ema of every
finished generator stage, ``fesgan`` and ``joint``; a stage the run took from ``--start_from`` is
read from that workdir), so a run scored here and the same run trained with that judge agree
exactly.  For runs trained before a judge existed, or to compare runs under one judge when the
judge is replaced.  Nothing is trained and the run's own files are not changed: the scores go to
``<workdir>/rejudge_<judge name(s)>.json`` and are printed; ``--out FILE`` also writes every run's
scores, beside its own ``eval/*`` and ``synth/*`` ones (identity, reconstruction), to
``FILE.json`` and a table to ``FILE.md``.  ``--data_dir`` and
``--manual_dir`` say where the run's database is when it has moved since the run.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags

from jfesgan import stages
from jfesgan.data import pipeline
from jfesgan.evaluation import judge as judge_lib
from jfesgan.evaluation import scores as scores_lib
from jfesgan.models import R_ARCHS, build_models
from jfesgan.run import provenance
from jfesgan.run import workdir as workdir_lib
from jfesgan.run.flags import one_line_errors, parse_flags, quiet_tool


def generator_workdir(workdir: str, summary: dict, stage: str) -> str:
  """Where the run in ``workdir`` keeps ``stage``'s checkpoint: its own workdir, or the one it
  took the finished stage from (``summary["start_from"]``)."""
  return summary.get("start_from", {}).get(stage, workdir)


def has_generator(workdir: str) -> bool:
  """Whether the finished run in ``workdir`` trained (or took) a generator stage."""
  config, _ = workdir_lib.read_run(workdir)
  return any(s.generator is not None for s in stages.select(config))


def rejudge(workdir: str, judge: str | judge_lib.Panel, *, data_dir: str | None = None,
            manual_dir: str | None = None) -> dict[str, float]:
  """The scores of every finished generator of the run in ``workdir`` by ``judge``: a judge's
  workdir, or several comma-separated (:func:`jfesgan.evaluation.judge.load`), or the judges
  already loaded (a :class:`jfesgan.evaluation.judge.Panel`, to score several runs with one
  load)."""
  workdir = os.path.abspath(workdir)
  config, class_names = workdir_lib.read_run(workdir)
  summary = workdir_lib.read_summary(workdir)
  reader = judge if isinstance(judge, judge_lib.Panel) else judge_lib.load(judge)
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
  ev = scores_lib.Evaluator(models, int(config.eval.batch_size))
  scores: dict[str, float] = {}
  for name in names:
    tree = workdir_lib.restore_finished(generator_workdir(workdir, summary, name), name, config)
    rng = np.random.default_rng([config.seed, stages.EVAL_STREAM])  # as the run's evaluation
    scores.update(judge_lib.judge_synthesis(
        ev, reader, tree["g_ema"], test, rng=rng,
        num_prior_samples=int(config.eval.num_prior_samples), stage=name))
  return scores


def saved_path(workdir: str, judge: str) -> str:
  """Where a run's scores by ``judge`` are kept: ``<workdir>/rejudge_<judge name(s)>.json``."""
  return os.path.join(os.path.abspath(workdir), f"rejudge_{judge_lib.name(judge)}.json")


def save(workdir: str, judge: str, scores: dict[str, float],
         fingerprints: dict[str, str] | None = None,
         families: dict[str, str] | None = None) -> str:
  """Keeps a run's scores by ``judge`` in its workdir (with the judges' workdirs, the content
  fingerprints of their weights, :func:`jfesgan.evaluation.judge.fingerprints`, and their
  architecture families, :func:`jfesgan.evaluation.judge.families`); the path."""
  path = saved_path(workdir, judge)
  with open(path, "w") as f:
    json.dump({"workdir": os.path.abspath(workdir), "judge": ",".join(judge_lib.workdirs(judge)),
               "fingerprints": fingerprints, "families": families, "scores": scores}, f,
              indent=2)
  return path


def saved_record(workdir: str, judge: str) -> dict | None:
  """What :func:`save` kept for exactly these judges (``scores``, and ``fingerprints`` when the
  file was written since they are recorded), or None."""
  path = saved_path(workdir, judge)
  if not os.path.isfile(path):
    return None
  kept = workdir_lib.read_json(path)
  return kept if kept.get("judge") == ",".join(judge_lib.workdirs(judge)) else None


def saved(workdir: str, judge: str) -> dict[str, float] | None:
  """The run's scores kept by :func:`save` for exactly these judges, or None."""
  kept = saved_record(workdir, judge)
  return None if kept is None else kept["scores"]


def describe_fingerprints(fingerprints: dict[str, str]) -> str:
  """``name fingerprint, ...`` for a table's header."""
  return ", ".join(f"{k} `{v}`" for k, v in fingerprints.items())


def describe_families(families: dict[str, str] | None) -> str:
  """``name family, ...`` (the trunk family's scores are judge/*, another's judge_<family>/*)."""
  return ", ".join(f"{k} {v}" for k, v in (families or {}).items()) or "not recorded"


def _percent(v: float) -> str:
  return f"{100 * v:.1f} %"


# The run's own synthesis scores that a table of judged runs shows beside the judge's (when a run
# has them: its summary holds ``synth/*`` once a recogniser stage evaluated its generator).
OWN_COLUMNS = (("synth/id_nearest", "nearest real person (Phi)", _percent),
               ("synth/id_nearest_pixel", "nearest real person (pixels)", _percent),
               ("synth/rec_l1", "reconstruction L1", "{:.3f}".format))


def own_scores(workdir: str) -> dict[str, float]:
  """The finished run's own evaluation scores (``eval/*``, ``synth/*``) from its summary."""
  return {k: float(v) for k, v in workdir_lib.read_summary(workdir).items()
          if k.startswith(("eval/", "synth/")) and isinstance(v, (int, float))}


def table(runs: dict[str, dict[str, float]]) -> str:
  """A Markdown table of several runs' judge scores: its reading of the real held-out faces, of
  each generator's translations (x_t) and new identities (x_p), and x_t as a fraction of real;
  then the runs' own identity and reconstruction scores (:data:`OWN_COLUMNS`) where they have
  them (a cell is empty where a run lacks one)."""
  roots = [judge_lib.key_root(f) for f in R_ARCHS
            if any(f"{judge_lib.key_root(f)}/real_acc" in sc for sc in runs.values())]
  roots = roots or ["judge"]
  # The trunk family's columns are titled as before; another family's name its root.
  named = lambda root, words: words if root == "judge" else f"{root}: {words}"
  head = ["run"]
  cols = []
  for root in roots:
    head.append(named(root, "judge on real faces"))
    for stage in ("fesgan", "joint"):
      if any(f"{root}/{stage}/acc_t" in sc for sc in runs.values()):
        cols.append((root, stage))
        head += [named(root, f"{stage} x_t"), named(root, f"{stage} x_p"),
                 named(root, f"{stage} x_t / real")]
  own = [c for c in OWN_COLUMNS if any(c[0] in sc for sc in runs.values())]
  head += [title for _, title, _ in own]
  lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
  for name, sc in runs.items():
    cells = [name]
    for root in roots:
      real = sc.get(f"{root}/real_acc")
      cells.append(_percent(real) if real is not None else "")
      for stage in [s for r, s in cols if r == root]:
        t, p = sc.get(f"{root}/{stage}/acc_t"), sc.get(f"{root}/{stage}/acc_p")
        cells += [_percent(t) if t is not None else "", _percent(p) if p is not None else "",
                  f"{t / real:.2f}" if t is not None and real else ""]
    cells += [fmt(sc[key]) if key in sc else "" for key, _, fmt in own]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_tool()
  f = flags.FLAGS
  judge_dir = ",".join(judge_lib.workdirs(f.judge, "--judge"))
  panel = judge_lib.load(judge_dir)  # once for every run
  fingerprints, families = judge_lib.provenance(panel)
  runs = {}
  for workdir in f.workdir:
    workdir = os.path.abspath(workdir)
    scores = rejudge(workdir, panel, data_dir=f.data_dir, manual_dir=f.manual_dir)
    path = save(workdir, judge_dir, scores, fingerprints, families)
    print(f"{workdir} judged by {judge_dir}:")
    for k, v in sorted(scores.items()):
      print(f"  {k:32s} {v:.4f}")
    print(f"  written to {path}", flush=True)
    runs[workdir] = {**own_scores(workdir), **scores}
  if f.out:
    base = f.out[:-len(".json")] if f.out.endswith(".json") else f.out
    command = "jfesgan rejudge " + " ".join(sys.argv[1:])
    made_at = provenance.commit()
    with open(base + ".json", "w") as fh:
      json.dump({"command": command, "commit": made_at, "judge": judge_dir,
                 "judge_fingerprints": fingerprints, "judge_families": families, "runs": runs},
                fh, indent=2)
    with open(base + ".md", "w") as fh:
      fh.write(f"Judge: `{judge_dir}` (weights {describe_fingerprints(fingerprints)}; "
               f"families {describe_families(families)}). Commit "
               f"`{made_at}`. Command:\n\n```\n{command}\n```\n\n{table(runs)}")
    print(f"written to {base}.json and {base}.md", flush=True)


def run() -> None:
  """``jfesgan rejudge`` (and ``python -m jfesgan.research.rejudge``)."""
  flags.DEFINE_multi_string("workdir", None, "Workdir of a finished run to score (repeat for "
                            "several).", required=True)
  flags.DEFINE_string("judge", None, "Workdir of the judge: a finished real-only run on another "
                      "database; several, comma-separated, are read as one (eval.judge).",
                      required=True)
  flags.DEFINE_string("data_dir", None, "Where the runs' TFDS datasets are now (default: as run).")
  flags.DEFINE_string("manual_dir", None, "Where the runs' database files are now (default: as "
                      "run).")
  flags.DEFINE_string("out", "", "Also write every run's scores to FILE.json and a Markdown "
                      "table to FILE.md (numbers only).")
  app.run(one_line_errors(main), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
