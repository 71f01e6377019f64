"""Generator recipes compared on their synthesis scores, paired by seed.

  jfesgan generators --recipe default=<runs>/base_s0,<runs>/base_s1 \
      --recipe edit=<runs>/edit_s0,<runs>/edit_s1 --out results/procedural/generator

Each recipe is one or more finished runs (one per seed) of the same config but for the recipe's
fields; the first recipe is the reference.  For every synthesis score of the runs' summaries
(``synth/*``: on the procedural faces against the renderer's truth; ``judge/*`` where a judge read
them) it writes each recipe's per-seed values and mean, and each other recipe's difference from
the reference on the same seeds (mean, its 95 % interval over the paired seeds, and on how many
seeds it is better: with two seeds the interval is wide, and a difference counts only where it
excludes 0).  Nothing is trained.
With ``--rescore`` the scores against the renderer's truth are computed anew from each run's
stage-1 generator with this code (:func:`jfesgan.evaluation.scores.truth_scores`: scores added
since a run finished, such as ``synth/change_made``, ``synth/psnr_rec_truth`` and the person ceilings
``synth/id_nearest{,_pixel}_{edit,truth}`` with the run's own Phi, for runs that predate them), and
the lattice scores (``synth/lattice``, ``synth/lattice_prior``, ``synth/lattice_real``).  Writes
``<out>.json`` (with the command and the commit it was made at) and ``<out>.md``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import jax
import numpy as np
from absl import app, flags

from jfesgan import stages
from jfesgan.data import pipeline
from jfesgan.evaluation import judge as judge_lib
from jfesgan.evaluation import scores as scores_lib
from jfesgan.evaluation.restored import RestoredGenerator
from jfesgan.models import build_models
from jfesgan.research.stats import t_interval
from jfesgan.run import provenance
from jfesgan.run import workdir as workdir_lib
from jfesgan.run.flags import one_line_errors, parse_flags

# Scores where lower is better; every other synth/judge score is better higher.
LOWER_IS_BETTER = ("synth/l1", "synth/l1_copy", "synth/l1_edit", "synth/l1_denoised",
                   "synth/l1_rec_truth",
                   "synth/rec_l1", "synth/id_sim_prior",
                   "synth/id_sim_other", "synth/id_nearest_chance", "synth/lattice",
                   "synth/lattice_prior", "synth/lattice_real")


def rescored(run: str) -> dict[str, float]:
  """The truth and lattice scores of ``run``'s stage-1 generator (g_ema) on the subjects the run
  held out, computed by this code as the run's summary computes them (the same new identities)."""
  config = workdir_lib.read_config(run)
  train, test = pipeline.train_test(config.data)
  if test.truth is None:
    raise ValueError(f"--rescore: {run}'s dataset {config.data.name!r} has no renderer's truth")
  tree = workdir_lib.restore_finished(run, "fesgan", config)  # read once: g_ema and Phi
  gen = RestoredGenerator.load(run, "fesgan", tree=tree)
  k = test.num_classes
  idx, c_t = scores_lib.translation_targets(test.label, k)
  real = pipeline.to_float(test.image)
  x_t = gen.translate(real[idx], np.eye(k, dtype=np.float32)[c_t])
  z_p, c_p = scores_lib.prior_codes(np.random.default_rng([config.seed, stages.EVAL_STREAM]),
                                    int(config.eval.num_prior_samples), gen.latent_dim, k)
  x_p = gen.decode(z_p, np.eye(k, dtype=np.float32)[c_p])
  embed = restored_phi(config, train, tree)
  e_x = embed(real)
  person_by_phi = lambda im: scores_lib.nearest_person(embed(im), idx, e_x, test.subject)
  # The reconstruction as the run's summary scores it: the decoder's full drawing G(E(x), y) of
  # each held-out face once (idx repeats every face for each of its targets).
  x_rec = gen.decode(gen.encode(real), np.eye(k, dtype=np.float32)[test.label])[idx]
  return {**scores_lib.truth_scores(real[idx], x_t, test, idx, c_t, person_by_phi=person_by_phi,
                                    x_rec=x_rec),
          **scores_lib.lattice_scores(x_t, x_p, real, 2**config.model.num_down)}


def restored_phi(config, train, tree) -> Callable[[np.ndarray], np.ndarray]:
  """Phi's unit embedding (images in [-1, 1] -> (N, embed_dim)) as a run's stage 1 saved it in
  ``tree`` (its restored checkpoint); ``train``: the run's training set (Phi has one direction per
  training subject)."""
  phi = tree["phi"]["params"]
  model = build_models(config, train.num_classes, num_subjects=len(np.unique(train.subject))).phi
  fn = jax.jit(lambda x: model.apply({"params": phi}, x, method="embed"))
  return lambda images: scores_lib.batched(fn, images, batch_size=256)


def read_recipe(spec: str, rescore: bool = False) -> tuple[str, dict[int, dict[str, float]]]:
  """``NAME=RUN[,RUN...]`` -> (name, {seed: scores}), the truth scores computed anew with
  ``rescore``; raises naming a run that is not finished or a seed given twice."""
  name, sep, runs = spec.partition("=")
  if not sep or not name or not runs:
    raise ValueError(f"--recipe {spec!r}: expected NAME=RUN[,RUN...]")
  out: dict[int, dict[str, float]] = {}
  for run in runs.split(","):
    seed = int(workdir_lib.read_config(run).seed)
    if seed in out:
      raise ValueError(f"--recipe {name}: two runs of seed {seed} ({run})")
    summary = workdir_lib.read_summary(run)
    out[seed] = {k: float(v) for k, v in summary.items()
                 if (k.startswith("synth/") or judge_lib.is_judge_key(k))
                 and isinstance(v, (int, float))}
    if rescore:
      out[seed].update(rescored(run))
  return name, out


def held_out(specs: list[str]) -> str:
  """What every run of the recipes ``specs`` was scored on (``data.heldout``: "test" or
  "validation"); an error naming the runs when they differ (a choice made on validation subjects
  is never paired with test scores)."""
  seen = {}
  for spec in specs:
    for run in spec.partition("=")[2].split(","):
      seen[run] = str(workdir_lib.read_config(run).data.get("heldout", "test"))
  kinds = set(seen.values())
  if len(kinds) > 1:
    raise ValueError("the runs were scored on different subjects: " + ", ".join(
        f"{run}: {kind}" for run, kind in seen.items()))
  return kinds.pop()


HELD_OUT_WORDS = {
    "test": "the held-out TEST subjects of fold `data.test_fold`: a probe to report, never a "
            "choice of recipe",
    "validation": "VALIDATION subjects carved from the training subjects: where recipes are chosen",
}


def compare(recipes: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict]:
  """Per recipe and score: per-seed values and mean; for every recipe after the first, the
  difference from the first on the seeds both have: its mean, the 95 % interval of that mean over
  the paired seeds (Student's t; None with one seed) and on how many seeds it is better."""
  names = list(recipes)
  ref = recipes[names[0]]
  keys = sorted(set.intersection(*(set(s) for runs in recipes.values() for s in runs.values())))
  out = {}
  for name, runs in recipes.items():
    row = {}
    for key in keys:
      values = {seed: runs[seed][key] for seed in sorted(runs)}
      entry = {"per_seed": values, "mean": float(np.mean(list(values.values())))}
      if name != names[0]:
        both = sorted(set(runs) & set(ref))
        diff = [runs[s][key] - ref[s][key] for s in both]
        sign = -1.0 if key in LOWER_IS_BETTER else 1.0
        lo, hi = t_interval(diff)
        entry["minus_reference"] = {"mean": float(np.mean(diff)) if diff else float("nan"),
                                    "ci95": None if lo is None else [lo, hi],
                                    "better": int(sum(sign * d > 0 for d in diff)),
                                    "of": len(diff)}
      row[key] = entry
    out[name] = row
  return out


def markdown(result: dict[str, dict], command: str, made_at: str, heldout: str = "") -> str:
  """The table: one row per score, a column per recipe (mean, then per seed; differences from
  the reference after the others' means, with their 95 % interval over the paired seeds)."""
  names = list(result)
  keys = list(result[names[0]])
  lines = ["# Generator recipes, synthesis scores", "", f"Command: `{command}`", ""]
  if heldout:
    lines += [f"Scored on {HELD_OUT_WORDS.get(heldout, heldout)}.", ""]
  lines += [f"Commit: `{made_at}`. Lower is better for "
            f"{', '.join(f'`{k}`' for k in LOWER_IS_BETTER)}; higher for the rest.", "",
            "| score | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
  for key in keys:
    cells = []
    for name in names:
      e = result[name][key]
      seeds = ", ".join(f"{v:.4g}" for v in e["per_seed"].values())
      cell = f"{e['mean']:.4g} ({seeds})"
      if "minus_reference" in e:
        d = e["minus_reference"]
        ci = d.get("ci95")
        interval = (f", 95 % CI [{ci[0]:+.3g}, {ci[1]:+.3g}]{'' if ci[0] <= 0 <= ci[1] else ' (excludes 0)'}"
                    if ci else "")
        cell += f"; {d['mean']:+.4g}{interval}, better on {d['better']} of {d['of']} seeds"
      cells.append(cell)
    lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if len(f.recipe) < 2:
    raise ValueError("give at least two --recipe NAME=RUN[,RUN...] (the first is the reference)")
  recipes = dict(read_recipe(spec, f.rescore) for spec in f.recipe)
  heldout = held_out(f.recipe)
  result = compare(recipes)
  command = "jfesgan generators " + " ".join(sys.argv[1:])
  made_at = provenance.commit()
  table = markdown(result, command, made_at, heldout)
  print(table)
  if f.out:
    os.makedirs(os.path.dirname(os.path.abspath(f.out)), exist_ok=True)
    with open(f.out + ".json", "w") as fh:
      json.dump({"command": command, "commit": made_at, "heldout": heldout, "recipes": result},
                fh, indent=1, sort_keys=True)
    with open(f.out + ".md", "w") as fh:
      fh.write(table)


def run() -> None:
  """``jfesgan generators`` (and ``python -m jfesgan.research.generators``)."""
  flags.DEFINE_multi_string("recipe", [], "NAME=RUN[,RUN...]: a recipe's finished runs, one per "
                            "seed; the first recipe is the reference.")
  flags.DEFINE_string("out", "", "Write <out>.json and <out>.md.")
  flags.DEFINE_bool("rescore", False, "Compute the scores against the renderer's truth anew from "
                    "each run's stage-1 generator (scores added since the runs finished).")
  app.run(one_line_errors(main), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
