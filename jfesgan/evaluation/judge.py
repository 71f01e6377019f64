"""An independent judge of synthetic expressions: a recogniser that jfesgan trained on ANOTHER
database (e.g. FER2013: ``configs/judge_fer2013.py``), loaded from that run's workdir.

The in-domain scores (``synth/expr_acc_*``) ask a recogniser trained on the same few hundred faces
as the generator, which can read cues no person would see.  The judge never saw the database the
generator learns from and is in no training loss: it is loaded by the evaluation alone, after
training, and only predicts.  Classes are matched by name (``angry`` = ``anger``, ``sad`` =
``sadness``, ...); a class the judge does not know (CK+'s contempt in FER2013) is left out of its
scores.  Several judges (``eval.judge=A,B,C``) of one architecture family are read as one,
averaging their probabilities (:class:`Ensemble`).

Judges of different families are read apart (:class:`Panel`).  The default recogniser's trunk is
the design of D_img and Phi too (``model.r_arch="trunk"``), and networks of one family read each
other's cues; a judge of another family (``model.r_arch="residual"``, a pre-activation ResNet
with global pooling: ``configs/judge_fer2013_residual.py``) is independent of every network in the
losses.  Each family's scores have their own root: ``judge/...`` for the trunk family, as before,
``judge_residual/...`` for the residual one (:func:`key_root`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from jfesgan.data.classes import canonical
from jfesgan.data.pipeline import ArrayDataset, to_float
from jfesgan.evaluation.restored import RestoredRecogniser
from jfesgan.evaluation.scores import Evaluator, prior_codes, translation_targets
from jfesgan.models import R_ARCHS
from jfesgan.run.provenance import params_fingerprint

# The family of D_img, Phi and the default R: a judge of it shares the losses' design.
LOSSES_FAMILY = "trunk"


def key_root(family: str) -> str:
  """The first part of a family's score keys: ``judge`` for the trunk family (the keys every run
  has written), ``judge_<family>`` for another."""
  if family not in R_ARCHS:
    raise ValueError(f"judge family {family!r} is not one of {R_ARCHS}")
  return "judge" if family == LOSSES_FAMILY else f"judge_{family}"


def is_judge_key(key: str) -> bool:
  """Whether a summary key is a judge's score, of any family (``judge/...``,
  ``judge_residual/...``)."""
  return key.split("/", 1)[0] in {key_root(f) for f in R_ARCHS} and "/" in key


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


def family(judge: RestoredRecogniser | Ensemble) -> str:
  """The architecture family of a judge (its recogniser's ``model.r_arch``)."""
  members = judge.members if isinstance(judge, Ensemble) else (judge,)
  return members[0].model.arch


@dataclasses.dataclass(frozen=True)
class Panel:
  """The judges, one reader per architecture family (a judge or an :class:`Ensemble` of the
  family's judges), the losses' family first; each family is scored apart."""

  readers: dict[str, RestoredRecogniser | Ensemble]

  @property
  def members(self) -> tuple[RestoredRecogniser, ...]:
    return tuple(m for r in self.readers.values()
                 for m in (r.members if isinstance(r, Ensemble) else (r,)))


def load(spec: str) -> Panel:
  """The judges: the finished real-only recognisers (stage ``real``) of the runs in the workdirs
  of ``spec`` (one, or several separated by commas), grouped by architecture family; a family's
  several judges are read as their :class:`Ensemble`.  All must share their classes."""
  judges = [RestoredRecogniser.load(w, "real") for w in workdirs(spec)]
  names = {tuple(canonical(n) for n in j.class_names) for j in judges}
  if len(names) > 1:
    raise ValueError("the judges do not share their classes: "
                     + "; ".join(f"{j.workdir}: {list(j.class_names)}" for j in judges))
  readers = {}
  for fam in sorted({family(j) for j in judges}, key=lambda f: (f != LOSSES_FAMILY, f)):
    mine = tuple(j for j in judges if family(j) == fam)
    readers[fam] = mine[0] if len(mine) == 1 else Ensemble(mine)
  return Panel(readers)


def fingerprints(panel: Panel) -> dict[str, str]:
  """{judge's folder name: the content fingerprint of its weights} of every judge
  (:func:`jfesgan.run.provenance.params_fingerprint`): a result records which networks read it,
  so a judge retrained under the same path is told apart."""
  return {os.path.basename(m.workdir.rstrip("/")): params_fingerprint(m.params)
          for m in panel.members}


def families(panel: Panel) -> dict[str, str]:
  """{judge's folder name: its architecture family}: which scores each judge is in."""
  return {os.path.basename(m.workdir.rstrip("/")): m.model.arch for m in panel.members}


def provenance(panel: Panel) -> tuple[dict[str, str], dict[str, str]]:
  """(:func:`fingerprints`, :func:`families`) of the judges: what a result records of its
  readers."""
  return fingerprints(panel), families(panel)


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


def judge_synthesis(ev: Evaluator, panel: Panel, g_params, test: ArrayDataset, *,
                    rng: np.random.Generator, num_prior_samples: int,
                    stage: str) -> dict[str, float]:
  """Each family's reading of one generator (the ``stage``'s): every held-out image translated
  to every other expression (``<root>/<stage>/acc_t``) and new identities
  (``<root>/<stage>/acc_p``), overall and per class, next to its reading of the real held-out
  faces (``<root>/real_acc``); ``<root>`` is the family's :func:`key_root`.  Every family reads
  the same faces."""
  k = test.num_classes
  x = to_float(test.image)
  idx, c_t = translation_targets(test.label, k)
  x_t = ev.translate(g_params, x[idx], c_t)
  z_p, c_p = prior_codes(rng, num_prior_samples, ev.models.latent_dim, k)
  x_p = ev.decode(g_params, z_p, c_p)
  out = {}
  for fam, judge in panel.readers.items():
    root = key_root(fam)
    raw = judge_scores(judge, test.class_names, real=x, real_labels=test.label, x_t=x_t,
                       c_t=c_t, x_p=x_p, c_p=c_p)
    for key, v in raw.items():
      name = key[len("judge/"):]
      out[f"{root}/{name}" if name.startswith("real") else f"{root}/{stage}/{name}"] = v
  return out
