"""The trained networks of a finished workdir, restored through the project's checkpointing (never
by training again): a recogniser (``real`` or ``joint`` R) or a generator (``fesgan`` or ``joint``
g_ema), with what is needed to apply them to new faces (class names, crop settings).

Used by the tools (:mod:`jfesgan.predict`, :mod:`jfesgan.evaluate`, :mod:`jfesgan.export`,
:mod:`jfesgan.synthesize`) and by the independent judge (:mod:`jfesgan.judge`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jfesgan import checkpointing, stages
from jfesgan.data import faces
from jfesgan.models import Generator, Recognizer, build_models


def _run_file(workdir: str, kind: str) -> str:
  """``<workdir>/<kind>.json`` of a finished run; raises naming it when it is missing."""
  path = os.path.join(os.path.abspath(workdir), f"{kind}.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{os.path.abspath(workdir)}: no {kind}.json; not the workdir of a "
                            "finished jfesgan run")
  return path


def read_summary(workdir: str) -> dict[str, Any]:
  """The summary (scores, class names, paths, ``start_from``) of the finished run in
  ``workdir``; raises naming what is missing."""
  with open(_run_file(workdir, "summary")) as f:
    return json.load(f)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The configuration the run in ``workdir`` trained with; raises naming what is missing."""
  with open(_run_file(workdir, "config")) as f:
    return ml_collections.ConfigDict(json.load(f))


def read_run(workdir: str) -> tuple[ml_collections.ConfigDict, tuple[str, ...]]:
  """(config, class names) of the run in ``workdir``; raises naming what is missing."""
  config = read_config(workdir)
  return config, tuple(read_summary(workdir)["class_names"])


def restore_finished(workdir: str, stage: str, config) -> dict:
  """The saved final state of ``stage`` in ``workdir`` as a plain tree of arrays; raises when the
  stage did not run there or is not finished (never fresh random weights)."""
  steps = int(config[stage].steps)
  done = checkpointing.latest_step(workdir, stage)
  if done is None:
    raise FileNotFoundError(f"{workdir}: no checkpoint of stage {stage!r}; its stages were "
                            f"{list(config.stages)}")
  if done != steps:
    raise ValueError(f"{workdir}: stage {stage!r} is not finished (checkpoint step {done} of "
                     f"{steps})")
  ckpt = checkpointing.StageCheckpointer(workdir, stage)
  try:
    return jax.device_get(ckpt.restore_raw(done))
  finally:
    ckpt.close()


def _finished_stage(config, workdir: str, kind: str, stage: str | None) -> str:
  """The stage to load: ``stage`` if given, else the last finished stage of the plan that has a
  ``kind`` ("recogniser" or "generator")."""
  candidates = [s.name for s in stages.PLAN if getattr(s, kind) is not None]
  if stage is not None:
    if stage not in candidates:
      raise ValueError(f"stage {stage!r} has no {kind}; stages with one: {candidates}")
    return stage
  for name in reversed(candidates):
    if checkpointing.latest_step(workdir, name) == int(config[name].steps):
      return name
  raise FileNotFoundError(f"{workdir}: no finished stage with a {kind} (of {candidates})")


def _load(workdir: str, kind: str, stage: str | None) -> dict:
  """What both loaders need: the run's config, class names and networks, the stage's restored
  tree, and the crop settings."""
  workdir = os.path.abspath(workdir)
  config, class_names = read_run(workdir)
  stage = _finished_stage(config, workdir, kind, stage)
  return dict(workdir=workdir, stage=stage, class_names=class_names, config=config,
              tree=restore_finished(workdir, stage, config),
              models=build_models(config, len(class_names), num_subjects=1),
              image_size=int(config.data.image_size), channels=int(config.data.channels),
              crop=crop_spec(config.data))


@dataclasses.dataclass
class _Trained:
  """A network restored from a workdir: where from, its classes, module and parameters, and the
  images it takes (size, channels, how faces were cut out)."""

  workdir: str
  stage: str
  class_names: tuple[str, ...]
  model: Recognizer | Generator
  params: Any
  image_size: int
  channels: int
  crop: faces.CropSpec


@dataclasses.dataclass
class Recogniser(_Trained):
  """A trained expression recogniser, frozen: ``predict`` / ``probabilities`` on float images in
  [-1, 1] of any size and 1 or 3 channels (resized and converted to what it was trained on)."""

  @classmethod
  def load(cls, workdir: str, stage: str | None = None) -> "Recogniser":
    """The recogniser of ``stage`` (default: the joint R if finished, else the real-only R)."""
    run = _load(workdir, "recogniser", stage)
    del run["config"]
    tree = run.pop("tree")
    params = tree["r"]["params"] if run["stage"] == stages.JOINT.name else tree["params"]
    return cls(model=run.pop("models").r, params=params, **run)

  def class_map(self, class_names) -> np.ndarray:
    """For each of ``class_names``, this recogniser's index of the same expression, or -1."""
    from jfesgan.judge import canonical  # pylint: disable=g-import-not-at-top
    mine = {canonical(n): i for i, n in enumerate(self.class_names)}
    return np.array([mine.get(canonical(n), -1) for n in class_names], np.int64)

  def probabilities(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) of float images (N, H, W, C) in [-1, 1]."""
    fn = _prob_fn(self.model, self.image_size, self.channels)
    return _batched(lambda x: fn(self.params, x), images, batch_size=batch_size)

  def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted class indices of float images (N, H, W, C) in [-1, 1]."""
    return self.probabilities(images, batch_size).argmax(-1)


@dataclasses.dataclass
class TrainedGenerator(_Trained):
  """A trained generator (its moving average g_ema): translations and new identities."""

  latent_dim: int

  @classmethod
  def load(cls, workdir: str, stage: str | None = None) -> "TrainedGenerator":
    """The generator of ``stage`` (default: the joint stage's if finished, else stage 1's)."""
    run = _load(workdir, "generator", stage)
    latent_dim = int(run.pop("config").model.latent_dim)
    return cls(model=run.pop("models").g, params=run.pop("tree")["g_ema"], latent_dim=latent_dim,
               **run)

  @functools.cached_property
  def _encode(self):
    return jax.jit(lambda p, x: self.model.apply({"params": p}, x, method="encode"))

  @functools.cached_property
  def _decode(self):
    return jax.jit(lambda p, z, c: self.model.apply({"params": p}, z, c, method="decode"))

  def encode(self, x: np.ndarray) -> np.ndarray:
    """Identity codes E(x) of float images in [-1, 1] at the run's size and channels."""
    return _batched(lambda b: self._encode(self.params, b), x, batch_size=64)

  def decode(self, z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """G(z, c) for codes (N, d) and expression weights (N, K) (one-hot, or mixed to interpolate)."""
    return _batched(lambda zb, cb: self._decode(self.params, zb, cb), z, c, batch_size=64)


def crop_spec(data_cfg) -> faces.CropSpec:
  """How the run's dataset cut faces out (procedural faces: they are faces already)."""
  detector = data_cfg.get("detector", "none")
  return faces.CropSpec(int(data_cfg.image_size), int(data_cfg.channels), detector,
                        float(data_cfg.get("margin", 0.0)))


def _batched(fn, *arrays: np.ndarray, batch_size: int) -> np.ndarray:
  """:func:`jfesgan.evaluation.batched` (imported here: evaluation imports this module)."""
  from jfesgan.evaluation import batched  # pylint: disable=g-import-not-at-top
  return batched(fn, *arrays, batch_size=batch_size)


_FNS: dict = {}


def _prob_fn(model, size: int, channels: int):
  key = (model, size, channels)
  if key not in _FNS:
    def probs(params, x):
      x = to_input(x, size, channels)
      return jax.nn.softmax(model.apply({"params": params}, x)[1], -1)
    _FNS[key] = jax.jit(probs)
  return _FNS[key]


def to_input(x: jax.Array, size: int, channels: int) -> jax.Array:
  """Float images converted to ``channels`` (luma for gray) and resized to ``size``."""
  if x.shape[-1] != channels:
    x = (jnp.repeat(x, channels, -1) if x.shape[-1] == 1
         else jnp.sum(x * jnp.array([0.299, 0.587, 0.114]), -1, keepdims=True))
  if x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, channels), "linear")
  return x
