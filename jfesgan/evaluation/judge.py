"""An independent judge of synthetic expressions: a recogniser that jfesgan trained on ANOTHER
database (e.g. FER2013: ``configs/judge_fer2013.py``), loaded from that run's workdir.

The in-domain scores (``synth/expr_acc_*``) ask a recogniser trained on the same few hundred faces
as the generator, which can read cues no person would see.  The judge never saw the database the
generator learns from and is in no training loss: it is loaded by the evaluation alone, after
training, and only predicts.  Classes are matched by name (``angry`` = ``anger``, ``sad`` =
``sadness``, ...); a class the judge does not know (CK+'s contempt in FER2013) is left out of its
scores.  Several judges (``eval.judge=A,B,C``) are read as one, averaging their probabilities
(:class:`Ensemble`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from jfesgan.data.classes import canonical
from jfesgan.data.pipeline import ArrayDataset, to_float
from jfesgan.evaluation.restored import RestoredRecogniser
from jfesgan.evaluation.scores import Evaluator, translation_targets
from jfesgan.run.provenance import params_fingerprint


@dataclasses.dataclass(frozen=True)
class Ensemble:
  """Several judges read as one: the mean of their class probabilities.  Two recognisers trained
  alike on the same database, differing only in their seed, can read the same synthetic faces
  10-20 points apart (and one class at 0 % where the other reads 80 %), so one judge's reading
  says as much about that judge as about the faces; their average is steadier."""

  members: tuple[Any, ...]

  def __post_init__(self):
    if not self.members:
      raise ValueError("an ensemble of judges needs at least one judge")
    names = {tuple(canonical(n) for n in m.class_names) for m in self.members}
    if len(names) > 1:
      raise ValueError("the judges do not share their classes: "
                       + "; ".join(f"{getattr(m, 'workdir', '?')}: {list(m.class_names)}"
                                   for m in self.members))

  @property
  def class_names(self) -> tuple[str, ...]:
    return tuple(self.members[0].class_names)

  def class_map(self, class_names) -> np.ndarray:
    return self.members[0].class_map(class_names)

  def probabilities(self, images: np.ndarray) -> np.ndarray:
    return np.mean([np.asarray(m.probabilities(images)) for m in self.members], axis=0)

  def predict(self, images: np.ndarray) -> np.ndarray:
    return self.probabilities(images).argmax(-1)


def workdirs(spec: str, field: str = "eval.judge") -> list[str]:
  """The judges' workdirs named by ``spec`` (one, or several separated by commas), absolute;
  an error naming ``field`` when there is none."""
  dirs = [os.path.abspath(w.strip()) for w in spec.split(",") if w.strip()]
  if not dirs:
    raise ValueError(f"{field}={spec!r} names no workdir, so it names no judge")
  return dirs


def name(spec: str) -> str:
  """A short name of the judge(s) in ``spec`` for file names: their folders' names, joined."""
  return "+".join(os.path.basename(w.rstrip("/")) for w in workdirs(spec))


def load(spec: str) -> RestoredRecogniser | Ensemble:
  """The judge: the finished real-only recogniser (stage ``real``) of the run in workdir
  ``spec``, or, for several workdirs separated by commas, their :class:`Ensemble`."""
  judges = [RestoredRecogniser.load(w, "real") for w in workdirs(spec)]
  return judges[0] if len(judges) == 1 else Ensemble(tuple(judges))


def fingerprints(judge: RestoredRecogniser | Ensemble) -> dict[str, str]:
  """{judge's folder name: the content fingerprint of its weights} of a judge or of every member
  of an ensemble (:func:`jfesgan.run.provenance.params_fingerprint`): a result records which
  networks read it, so a judge retrained under the same path is told apart."""
  members = judge.members if isinstance(judge, Ensemble) else (judge,)
  return {os.path.basename(m.workdir.rstrip("/")): params_fingerprint(m.params) for m in members}


def fingerprints_of(spec: str) -> dict[str, str]:
  """:func:`fingerprints` of the judge(s) in workdir(s) ``spec``, loaded for it."""
  return fingerprints(load(spec))


def judge_scores(judge: RestoredRecogniser | Ensemble, class_names, *, real: np.ndarray,
                 real_labels: np.ndarray,
                 x_t: np.ndarray, c_t: np.ndarray, x_p: np.ndarray,
                 c_p: np.ndarray) -> dict[str, float]:
  """The judge's accuracy on real held-out faces (``judge/real_acc``), translations
  (``judge/acc_t``) and new identities (``judge/acc_p``), each over the classes it knows, and per
  class (``judge/<kind>/<class>``)."""
  cmap = judge.class_map(class_names)
  scores = {}
  for kind, images, labels in (("real", real, real_labels), ("t", x_t, c_t), ("p", x_p, c_p)):
    known = cmap[labels] >= 0
    if not known.any():
      continue
    hit = judge.predict(images[known]) == cmap[labels[known]]
    name = "real_acc" if kind == "real" else f"acc_{kind}"
    scores[f"judge/{name}"] = float(hit.mean())
    for k, cname in enumerate(class_names):
      sel = labels[known] == k
      if sel.any():
        scores[f"judge/{kind}/{cname}"] = float(hit[sel].mean())
  return scores


def judge_synthesis(ev: Evaluator, judge: RestoredRecogniser | Ensemble, g_params, test: ArrayDataset, *,
                    rng: np.random.Generator, num_prior_samples: int,
                    prefix: str) -> dict[str, float]:
  """The judge's reading of one generator: every held-out image translated to every other
  expression (``<prefix>/acc_t``) and new identities (``<prefix>/acc_p``), overall and per
  class, next to its reading of the real held-out faces (``judge/real_acc``)."""
  k = test.num_classes
  x = to_float(test.image)
  idx, c_t = translation_targets(test.label, k)
  x_t = ev.translate(g_params, x[idx], c_t)
  z_p = rng.uniform(-1, 1, (num_prior_samples, ev.models.latent_dim)).astype(np.float32)
  c_p = rng.integers(0, k, num_prior_samples)
  x_p = ev.decode(g_params, z_p, c_p)
  raw = judge_scores(judge, test.class_names, real=x, real_labels=test.label, x_t=x_t, c_t=c_t,
                     x_p=x_p, c_p=c_p)
  out = {}
  for key, v in raw.items():
    name = key[len("judge/"):]
    out[f"judge/{name}" if name.startswith("real") else f"{prefix}/{name}"] = v
  return out
