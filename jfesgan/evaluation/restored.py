"""The trained networks of a finished workdir, restored through the project's checkpointing (never
by training again): a recogniser (``real`` or ``joint`` R) or a generator (``fesgan`` or ``joint``
g_ema), with what is needed to apply them to new faces (class names, crop settings).

Used by the tools (:mod:`jfesgan.tools`) and by the independent judge
(:mod:`jfesgan.evaluation.judge`).  The run's files are read by :mod:`jfesgan.run.workdir`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jfesgan import stages
from jfesgan.data import faces
from jfesgan.data.classes import class_map
from jfesgan.evaluation.scores import batched
from jfesgan.models import Generator, Recogniser, build_models
from jfesgan.run import checkpointing
from jfesgan.run.workdir import read_run, restore_finished


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


def _load(workdir: str, kind: str, stage: str | None, tree=None) -> dict:
  """What both loaders need: the run's config, class names and networks, the stage's restored
  tree (``tree``, where the caller restored it already, is not read again), and the crop
  settings."""
  workdir = os.path.abspath(workdir)
  config, class_names = read_run(workdir)
  stage = _finished_stage(config, workdir, kind, stage)
  if tree is None:
    tree = restore_finished(workdir, stage, config)
  return dict(workdir=workdir, stage=stage, class_names=class_names, config=config, tree=tree,
              models=build_models(config, len(class_names), num_subjects=1),
              image_size=int(config.data.image_size), channels=int(config.data.channels),
              crop=crop_spec(config.data))


def check_fits(params, model, example_args, *, workdir: str, stage: str) -> None:
  """Raises ``ValueError`` when the restored ``params`` are not those of ``model`` as the run's
  ``config.json`` builds it (an edited ``data.image_size`` or ``model`` field, or a checkpoint of
  another run), naming the first parameters that differ, instead of a shape error from deep in
  Flax when the network is first applied."""
  want = jax.eval_shape(lambda: model.init(jax.random.key(0), *example_args))["params"]
  have = {jax.tree_util.keystr(p): tuple(np.shape(v))
          for p, v in jax.tree_util.tree_leaves_with_path(params)}
  need = {jax.tree_util.keystr(p): tuple(v.shape)
          for p, v in jax.tree_util.tree_leaves_with_path(want)}
  bad = [f"{k}: {have.get(k, 'missing')} in the checkpoint, {v} for the config"
         for k, v in need.items() if have.get(k) != v]
  bad += [f"{k}: in the checkpoint, not in the config's network" for k in have if k not in need]
  if bad:
    raise ValueError(f"{workdir}: the checkpoint of stage {stage!r} does not fit the network "
                     f"that {os.path.join(workdir, 'config.json')} describes (was config.json "
                     f"edited, e.g. data.image_size or a model field?): " + "; ".join(bad[:3])
                     + (f"; and {len(bad) - 3} more" if len(bad) > 3 else ""))


@dataclasses.dataclass
class _Trained:
  """A network restored from a workdir: where from, its classes, module and parameters, and the
  images it takes (size, channels, how faces were cut out)."""

  workdir: str
  stage: str
  class_names: tuple[str, ...]
  model: Recogniser | Generator
  params: Any
  image_size: int
  channels: int
  crop: faces.CropSpec


@dataclasses.dataclass
class RestoredRecogniser(_Trained):
  """A trained expression recogniser, frozen: ``predict`` / ``probabilities`` on float images in
  [-1, 1] of any size and 1 or 3 channels (resized and converted to what it was trained on)."""

  @classmethod
  def load(cls, workdir: str, stage: str | None = None) -> RestoredRecogniser:
    """The recogniser of ``stage`` (default: the joint R if finished, else the real-only R)."""
    run = _load(workdir, "recogniser", stage)
    del run["config"]
    tree = run.pop("tree")
    params = tree["r"]["params"] if run["stage"] == stages.JOINT.name else tree["params"]
    model = run.pop("models").r
    size, ch = run["image_size"], run["channels"]
    check_fits(params, model, (jnp.zeros((1, size, size, ch)),), workdir=run["workdir"],
               stage=run["stage"])
    return cls(model=model, params=params, **run)

  def class_map(self, class_names) -> np.ndarray:
    """For each of ``class_names``, this recogniser's index of the same expression, or -1."""
    return class_map(self.class_names, class_names)

  def probabilities(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) of float images (N, H, W, C) in [-1, 1]."""
    fn = _prob_fn(self.model, self.image_size, self.channels)
    return batched(lambda x: fn(self.params, x), images, batch_size=batch_size)

  def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted class indices of float images (N, H, W, C) in [-1, 1]."""
    return self.probabilities(images, batch_size).argmax(-1)


@dataclasses.dataclass
class RestoredGenerator(_Trained):
  """A trained generator (its moving average g_ema): translations and new identities."""

  latent_dim: int

  @classmethod
  def load(cls, workdir: str, stage: str | None = None, tree=None) -> RestoredGenerator:
    """The generator of ``stage`` (default: the joint stage's if finished, else stage 1's);
    ``tree``: that stage's checkpoint as :func:`restore_finished` returned it, where the caller
    has it already (its other networks, e.g. Phi, are read from the same restore)."""
    run = _load(workdir, "generator", stage, tree)
    latent_dim = int(run.pop("config").model.latent_dim)
    models, params = run.pop("models"), run.pop("tree")["g_ema"]
    size, ch = run["image_size"], run["channels"]
    check_fits(params, models.g, (jnp.zeros((1, size, size, ch)),
                                  jnp.zeros((1, len(run["class_names"])))),
               workdir=run["workdir"], stage=run["stage"])
    return cls(model=models.g, params=params, latent_dim=latent_dim, **run)

  @functools.cached_property
  def _encode(self):
    return jax.jit(lambda p, x: self.model.apply({"params": p}, x, method="encode"))

  @functools.cached_property
  def _translate(self):
    return jax.jit(lambda p, x, c: self.model.apply({"params": p}, x, c))

  @functools.cached_property
  def _decode(self):
    return jax.jit(lambda p, z, c: self.model.apply({"params": p}, z, c, method="decode"))

  def encode(self, x: np.ndarray) -> np.ndarray:
    """Identity codes E(x) of float images in [-1, 1] at the run's size and channels."""
    return batched(lambda b: self._encode(self.params, b), x, batch_size=64)

  def translate(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Faces ``x`` (float images in [-1, 1] at the run's size and channels) with expression
    weights ``c`` (N, K): G(E(x), c), or as ``model.g_edit`` says (that drawing edited into x
    through its mask, or x plus the drawn change), as the run's translations were made and
    scored."""
    return batched(lambda xb, cb: self._translate(self.params, xb, cb), x, c, batch_size=64)

  def decode(self, z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """G(z, c) for codes (N, d) and expression weights (N, K) (one-hot, or mixed to interpolate)."""
    return batched(lambda zb, cb: self._decode(self.params, zb, cb), z, c, batch_size=64)


def crop_spec(data_cfg) -> faces.CropSpec:
  """How the run's dataset cut faces out (procedural faces: they are faces already)."""
  detector = data_cfg.get("detector", "none")
  return faces.CropSpec(int(data_cfg.image_size), int(data_cfg.channels), detector,
                        float(data_cfg.get("margin", 0.0)), bool(data_cfg.get("align", False)))


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
