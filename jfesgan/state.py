"""Stage-wise train states: one TrainState and one optax optimiser per network.

Stage names: ``g`` (generator: encoder + decoder), ``dimg`` (image discriminator), ``dz`` (latent
discriminator), ``phi`` (identity network), ``r`` (recogniser).
"""

from __future__ import annotations


import flax
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from jfesgan.models import Models

TrainState = train_state.TrainState


@flax.struct.dataclass
class FesganStates:
  """Stage 1: the players ``g``, ``dimg``, ``dz`` and the frozen identity network ``phi``."""

  g: TrainState
  dimg: TrainState
  dz: TrainState
  phi: TrainState

  @property
  def step(self) -> jax.Array:
    """Stage-1 iterations: the discriminators step every iteration, ``g`` every n_critic-th."""
    return self.dimg.step


class RState(TrainState):
  """The recogniser's state: a TrainState plus the running (EMA) real class centres (K, D) that
  stand in for classes with no real sample in a batch (intra-class loss)."""

  centres: jax.Array


@flax.struct.dataclass
class JointStates:
  """Stage 2: the recogniser ``r`` joins the stage-1 players; ``phi`` stays frozen."""

  g: TrainState
  dimg: TrainState
  dz: TrainState
  phi: TrainState
  r: RState

  @property
  def step(self) -> jax.Array:
    """Stage-2 iterations (the recogniser steps every iteration)."""
    return self.r.step


def make_optimizer(section) -> optax.GradientTransformation:
  """The optimiser of a config section: fields lr, b1, b2, optional grad_clip (0 = none) and
  optional optimizer ('adam', the default, or 'sgd' with momentum b1)."""
  name = section.get("optimizer", "adam")
  if name == "adam":
    tx = optax.adam(section.lr, b1=section.b1, b2=section.b2)
  elif name == "sgd":
    tx = optax.sgd(section.lr, momentum=section.b1 or None)
  else:
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")
  if section.get("grad_clip", 0.0):
    tx = optax.chain(optax.clip_by_global_norm(section.grad_clip), tx)
  return tx


def _dummy_image(models: Models) -> jax.Array:
  return jnp.zeros((1, models.image_size, models.image_size, models.channels), jnp.float32)


def create_phi_state(models: Models, config, rng: jax.Array) -> TrainState:
  """Fresh state of the identity network ``phi``."""
  params = models.phi.init(rng, _dummy_image(models))["params"]
  return TrainState.create(apply_fn=models.phi.apply, params=params, tx=make_optimizer(config.phi))


def create_r_state(models: Models, section, rng: jax.Array) -> TrainState:
  """Fresh state of a recogniser ``r``, with the optimiser of config section ``section``."""
  params = models.r.init(rng, _dummy_image(models))["params"]
  return TrainState.create(apply_fn=models.r.apply, params=params, tx=make_optimizer(section))


def create_joint_states(models: Models, config, rng: jax.Array, fes: FesganStates) -> JointStates:
  """Stage-2 states: the trained stage-1 players with fresh optimiser states, and a new ``r``
  (its trunk copied from Phi when ``config.stage2.init_r_from_phi``)."""
  params = models.r.init(rng, _dummy_image(models))["params"]
  if config.stage2.init_r_from_phi:
    params = dict(params, trunk=fes.phi.params["trunk"])
  r = RState.create(apply_fn=models.r.apply, params=params, tx=make_optimizer(config.r),
                    centres=jnp.zeros((models.num_classes, config.model.embed_dim), jnp.float32))
  fresh = lambda s, section: TrainState.create(apply_fn=s.apply_fn, params=s.params,
                                               tx=make_optimizer(section))
  return JointStates(g=fresh(fes.g, config.g), dimg=fresh(fes.dimg, config.dimg),
                     dz=fresh(fes.dz, config.dz), phi=fes.phi, r=r)


def create_fesgan_states(models: Models, config, rng: jax.Array, phi: TrainState) -> FesganStates:
  """Fresh stage-1 states around a trained identity network ``phi``."""
  kg, kd, kz = jax.random.split(rng, 3)
  img = _dummy_image(models)
  g_params = models.g.init(kg, img, jnp.zeros((1, models.num_classes)))["params"]
  dimg_params = models.dimg.init(kd, img)["params"]
  dz_params = models.dz.init(kz, jnp.zeros((1, models.latent_dim)))["params"]
  return FesganStates(
      g=TrainState.create(apply_fn=models.g.apply, params=g_params, tx=make_optimizer(config.g)),
      dimg=TrainState.create(apply_fn=models.dimg.apply, params=dimg_params,
                             tx=make_optimizer(config.dimg)),
      dz=TrainState.create(apply_fn=models.dz.apply, params=dz_params, tx=make_optimizer(config.dz)),
      phi=phi)
