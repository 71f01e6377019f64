"""The run's summary: each finished stage evaluated on the held-out data as the plan says (sample
grids of every generator, scores of every recogniser, the synthesis scores and the independent
judge's), collected into ``summary.json``; and its end-of-run text.

Metric keys are ``eval/<stage>/...`` (recognisers), ``synth/...`` (synthesis, in-domain),
``judge/...`` and ``judge_residual/...`` (the independent judges of each architecture family):
:mod:`jfesgan.evaluation.scores` says what each means.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jfesgan import stages
from jfesgan.data import pipeline
from jfesgan.evaluation import grids, html_report
from jfesgan.evaluation import judge as judge_lib
from jfesgan.evaluation import scores as scores_lib
from jfesgan.run import metrics as metrics_lib


class RunSummary:
  """Evaluates each finished stage on the held-out data and collects the run's summary: the
  scores of every recogniser (``eval/<stage>/...``, confusion matrices), the synthesis scores once
  the generator and its judge are trained, sample grids of every generator, and the paths."""

  def __init__(self, config, models, test: pipeline.ArrayDataset,
               writer: metrics_lib.MetricWriter, workdir: str):
    self.config, self.models, self.test, self.writer, self.workdir = (config, models, test,
                                                                      writer, workdir)
    self.ev = scores_lib.Evaluator(models, config.eval.batch_size)
    # The independent judge of synthesis: loaded here, by the evaluation alone (no stage sees it).
    self.judge = judge_lib.load(config.eval.judge) if config.eval.judge else None
    self.judge_fingerprints, self.judge_families = (
        judge_lib.provenance(self.judge) if self.judge is not None else (None, None))
    self.paths = {"workdir": workdir, "metrics": writer.jsonl_path, "tensorboard": writer.tb_dir,
                  "checkpoints": os.path.join(workdir, "checkpoints")}
    self.summary: dict[str, Any] = {"confusion": {}, "paths": self.paths,
                                    "class_names": list(test.class_names)}

  def grids_during(self, stage: stages.Stage):
    """``on_step(step, state)`` for :func:`jfesgan.train.run_stage`: the stage's generator drawn
    every ``config.sample_every`` steps (the last grid is drawn once, after the stage); None for a
    stage without a generator."""
    if stage.generator is None:
      return None
    last, every = stage.steps(self.config), self.config.sample_every
    return lambda step, state: (self.grid(stage, step, state)
                                if step % every == 0 and step < last else None)

  def finish(self, times: Mapping[str, float], start_from: Mapping[str, str]) -> dict[str, Any]:
    """Writes ``summary.json`` (the scores, with the wall ``times`` and the stages taken from
    another run, ``start_from``) and ``report.html``; returns the summary."""
    self.summary["wall_seconds"] = dict(times)
    if start_from:
      self.summary["start_from"] = dict(start_from)
    self.paths["summary"] = os.path.join(self.workdir, "summary.json")
    self.paths["report"] = os.path.join(self.workdir, "report.html")
    self.writer.json(self.summary, self.paths["summary"])
    if self.writer.active:
      html_report.write(self.workdir)
    return self.summary

  def grid(self, stage: stages.Stage, step: int, state) -> None:
    """Draws the stage's generator: held-out people with every expression, and new people."""
    g = scores_lib.grid_contents(self.ev, stage.generator(state), self.test,
                                 self.config.eval.grid_rows, self.config.seed,
                                 self.models.latent_dim)
    img = grids.synthesis_grid(g["inputs"], g["recon"], g["translations"], g["prior"],
                                   self.test.class_names)
    self.paths["samples"] = self.writer.png(
        img, os.path.join(self.workdir, "samples", f"{stage.name}_{step:06d}.png"))
    self.writer.image(step, f"samples/{stage.name}", img)

  def stage_done(self, stage: stages.Stage, state, finished: Mapping[str, Any]) -> None:
    """Everything the plan says to show or score once ``stage`` is finished."""
    step = int(jax.device_get(state.step))
    names = list(self.test.class_names)
    if stage.generator is not None:
      self.grid(stage, step, state)
      if self.judge is not None:
        scores = judge_lib.judge_synthesis(
            self.ev, self.judge, stage.generator(state), self.test,
            rng=np.random.default_rng([self.config.seed, stages.EVAL_STREAM]),
            num_prior_samples=self.config.eval.num_prior_samples, stage=stage.name)
        self.summary.update(scores)
        self.summary[JUDGE_FINGERPRINTS] = self.judge_fingerprints
        self.summary[JUDGE_FAMILIES] = self.judge_families
        self.writer.scalars(step, scores, "eval")
    if stage.recogniser is not None:
      scores, cm = scores_lib.recognition_scores(self.ev, stage.recogniser(state), self.test,
                                                 f"eval/{stage.name}")
      self.summary.update(scores)
      self.summary["confusion"][stage.name] = cm.tolist()
      base = os.path.join(self.workdir, f"confusion_{stage.name}")
      self.writer.json({"class_names": names, "rows_true_columns_predicted": cm.tolist(),
                        "per_class_accuracy": dict(zip(names, scores_lib.per_class_accuracy(cm)
                                                       .tolist())),
                        "accuracy": float(np.trace(cm) / max(cm.sum(), 1))}, base + ".json")
      self.paths[f"confusion_{stage.name}"] = self.writer.png(
          grids.confusion_image(cm, names, stage.title), base + ".png")
      self.writer.scalars(step, scores, "eval")
    synth = stages.synthesis_inputs(finished)
    if synth is not None and "synth/id_sim" not in self.summary:
      scores = scores_lib.synthesis_scores(
          self.ev, test=self.test, rng=np.random.default_rng([self.config.seed, stages.EVAL_STREAM]),
          num_prior_samples=self.config.eval.num_prior_samples, **synth)
      self.summary.update(scores)
      self.writer.scalars(step, scores, "eval")


# The summary's record of which networks the judge/* scores came from ({name: fingerprint}).
JUDGE_FINGERPRINTS = "judge_fingerprints"
# ... and each judge's architecture family ({name: "trunk" or "residual"}): the trunk family's
# scores are judge/*, another family's judge_<family>/* (jfesgan.evaluation.judge.key_root).
JUDGE_FAMILIES = "judge_families"


def format_summary(summary: dict[str, Any]) -> str:
  """A human-readable end-of-run report."""
  lines = ["", "jfesgan run finished.", ""]
  for k, v in summary["paths"].items():
    lines.append(f"  {k:18s} {v}")
  lines.append("")
  for k, v in sorted(summary.items()):
    if isinstance(v, float):
      lines.append(f"  {k:28s} {v:.4f}")
  if "eval/joint/acc" in summary and "eval/real/acc" in summary:
    lines.append("")
    lines.append(f"  held-out accuracy: joint R {summary['eval/joint/acc']:.4f} vs real-only R "
                 f"{summary['eval/real/acc']:.4f}")
  lines.append("")
  lines.append("  wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["wall_seconds"].items()))
  return "\n".join(lines)
