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

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jfesgan import checkpointing
from jfesgan import state as state_lib
from jfesgan.models import Recognizer, build_models

# Spellings of the same expression across databases -> one canonical name.
SYNONYMS = {"angry": "anger", "sad": "sadness", "happiness": "happy", "surprised": "surprise",
            "disgusted": "disgust", "fearful": "fear", "afraid": "fear", "scared": "fear"}


def canonical(name: str) -> str:
  """The canonical spelling of an expression name."""
  name = name.strip().lower()
  return SYNONYMS.get(name, name)


@dataclasses.dataclass
class Judge:
  """A trained recogniser of another database, frozen.

  Attributes:
    workdir: the run it was trained in.
    class_names: its classes, in its own order.
    model, params: the recogniser and its trained parameters.
    image_size, channels: what it reads; other images are resized / converted first.
  """

  workdir: str
  class_names: tuple[str, ...]
  model: Recognizer
  params: dict
  image_size: int
  channels: int

  @classmethod
  def load(cls, workdir: str) -> "Judge":
    """Loads the finished ``real`` stage of the run in ``workdir``; raises naming the workdir and
    what is missing."""
    workdir = os.path.abspath(workdir)
    paths = {k: os.path.join(workdir, f"{k}.json") for k in ("config", "summary")}
    for k, p in paths.items():
      if not os.path.isfile(p):
        raise FileNotFoundError(f"eval.judge={workdir}: no {os.path.basename(p)}; the judge is the "
                                "workdir of a finished run with stage 'real' (configs/judge_fer2013.py)")
    with open(paths["config"]) as f:
      config = ml_collections.ConfigDict(json.load(f))
    with open(paths["summary"]) as f:
      class_names = tuple(json.load(f)["class_names"])
    steps = int(config.real.steps)
    done = checkpointing.latest_step(workdir, "real")
    if done != steps:
      raise ValueError(f"eval.judge={workdir}: its stage 'real' is not finished (checkpoint step "
                       f"{done}, of {steps})")
    models = build_models(config, len(class_names), num_subjects=1)
    create = lambda: state_lib.create_r_state(models, config.real.optimizer, jax.random.key(0),
                                              steps=steps)
    ckpt = checkpointing.StageCheckpointer(workdir, "real")
    try:
      state = ckpt.restore_or_create(create, jax.sharding.SingleDeviceSharding(jax.devices()[0]),
                                     require=True)
    finally:
      ckpt.close()
    return cls(workdir=workdir, class_names=class_names, model=models.r,
               params=jax.device_get(state.params), image_size=int(config.data.image_size),
               channels=int(config.data.channels))

  def class_map(self, class_names) -> np.ndarray:
    """For each of ``class_names``, the judge's index of the same expression, or -1."""
    mine = {canonical(n): i for i, n in enumerate(self.class_names)}
    return np.array([mine.get(canonical(n), -1) for n in class_names], np.int64)

  def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The judge's class indices for float images (N, H, W, C) in [-1, 1] of any size and 1 or 3
    channels."""
    fn = _predict_fn(self.model, self.image_size, self.channels)
    out = []
    for s in range(0, images.shape[0], batch_size):
      chunk = images[s:s + batch_size]
      m = chunk.shape[0]
      if m < batch_size:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - m, 0)])
      out.append(np.asarray(fn(self.params, chunk))[:m])
    return np.concatenate(out) if out else np.zeros((0,), np.int64)


_FNS: dict = {}


def _predict_fn(model, size: int, channels: int):
  key = (model, size, channels)
  if key not in _FNS:
    def predict(params, x):
      if x.shape[-1] != channels:  # gray <-> colour (luma weights)
        x = (jnp.repeat(x, channels, -1) if x.shape[-1] == 1
             else jnp.sum(x * jnp.array([0.299, 0.587, 0.114]), -1, keepdims=True))
      if x.shape[1:3] != (size, size):
        x = jax.image.resize(x, (x.shape[0], size, size, channels), "linear")
      return model.apply({"params": params}, x)[1].argmax(-1)
    _FNS[key] = jax.jit(predict)
  return _FNS[key]


def judge_scores(judge: Judge, class_names, *, real: np.ndarray, real_labels: np.ndarray,
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
