"""The two FESGAN discriminators: D_img (real/fake + expression heads) and D_z (latent prior)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jfesgan.models.common import check_resolution, level_widths
from jfesgan.models.layers import Conv


class ImageDiscriminator(nn.Module):
  """D_img: image -> (critic score (N,), expression logits (N, K)) from one shared trunk.

  No normalisation layers: the WGAN-GP penalty is defined per sample, and batch statistics would
  couple the samples of a batch.
  """

  num_classes: int = 7
  width: int = 32
  max_width: int = 256
  num_down: int = 3
  impl: str = "auto"
  # Compute dtype of activations (float32, or bfloat16 on accelerators); parameters stay float32
  # and the outputs are float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    check_resolution(x.shape[1], self.num_down)
    widths = level_widths(self.width, self.max_width, self.num_down)
    h = x.astype(self.dtype)
    for w in widths:
      h = nn.leaky_relu(Conv(w, 4, strides=2, impl=self.impl)(h), 0.2)
    h = h.reshape(h.shape[0], -1)
    critic = nn.Dense(1, dtype=self.dtype, name="critic")(h)[:, 0]
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(h)
    return critic.astype(jnp.float32), logits.astype(jnp.float32)


class LatentDiscriminator(nn.Module):
  """D_z: identity code (N, d) -> logit (N,) that the code is a sample of the prior U[-1, 1]^d.

  With ``num_classes`` > 0 it also holds a classifier of the code's expression, layers of its own
  beside the prior's (``fesgan.code_expr_weight``): ``expression=True`` returns its (N, K) logits.
  The generator's ``code_expr`` term trains the encoder to leave it guessing, so that the code
  holds the person and the decoder must take the expression from its expression code (a Fader
  network's latent adversary: Lample et al. 2017).  The prior's layers are named and initialised
  as without it.
  """

  hidden: tuple[int, ...] = (256, 256)
  num_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, expression: bool = False) -> jax.Array:
    if expression and not self.num_classes:
      raise ValueError("this D_z has no expression classifier (fesgan.code_expr_weight is 0)")
    # Initialisation creates both heads' layers; a call runs the one it asks for.
    if self.num_classes and (expression or self.is_initializing()):
      h = z.astype(self.dtype)
      for i, w in enumerate(self.hidden):
        h = nn.leaky_relu(nn.Dense(w, dtype=self.dtype, name=f"expression{i}")(h), 0.2)
      logits = nn.Dense(self.num_classes, dtype=self.dtype, name="expression_out")(h)
      if expression:
        return logits.astype(jnp.float32)
    h = z.astype(self.dtype)
    for w in self.hidden:
      h = nn.leaky_relu(nn.Dense(w, dtype=self.dtype)(h), 0.2)
    return nn.Dense(1, dtype=self.dtype)(h)[:, 0].astype(jnp.float32)
