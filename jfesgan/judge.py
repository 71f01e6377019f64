"""An independent judge of synthetic expressions: a recogniser that jfesgan trained on ANOTHER
database (e.g. FER2013: ``configs/judge_fer2013.py``), loaded from that run's workdir.

The in-domain scores (``synth/expr_acc_*``) ask a recogniser trained on the same few hundred faces
as the generator, which can read cues no person would see.  The judge never saw the database the
generator learns from and is in no training loss: it is loaded by the evaluation alone, after
training, and only predicts.  Classes are matched by name (``angry`` = ``anger``, ``sad`` =
``sadness``, ...); a class the judge does not know (CK+'s contempt in FER2013) is left out of its
scores.
"""

from __future__ import annotations

import numpy as np

from jfesgan.trained import Recogniser

# Spellings of the same expression across databases -> one canonical name.
SYNONYMS = {"angry": "anger", "sad": "sadness", "happiness": "happy", "surprised": "surprise",
            "disgusted": "disgust", "fearful": "fear", "afraid": "fear", "scared": "fear"}


def canonical(name: str) -> str:
  """The canonical spelling of an expression name."""
  name = name.strip().lower()
  return SYNONYMS.get(name, name)


def load(workdir: str) -> Recogniser:
  """The judge: the finished real-only recogniser (stage ``real``) of the run in ``workdir``."""
  return Recogniser.load(workdir, "real")


def judge_scores(judge: Recogniser, class_names, *, real: np.ndarray, real_labels: np.ndarray,
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
