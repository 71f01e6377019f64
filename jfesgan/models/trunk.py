"""A compact convolutional trunk shared by the identity network Phi and the recogniser R."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jfesgan.models.generator import check_resolution, level_widths
from jfesgan.models.layers import Conv, group_norm


class ConvTrunk(nn.Module):
  """Image -> (N, embed_dim) feature: per level a stride-2 conv then a 3x3 conv, global pool."""

  embed_dim: int = 64
  width: int = 32
  max_width: int = 256
  num_down: int = 3
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    check_resolution(x.shape[1], self.num_down)
    widths = level_widths(self.width, self.max_width, self.num_down)
    h = x
    for w in widths:
      h = nn.relu(group_norm(w)(Conv(w, 4, strides=2, impl=self.impl)(h)))
      h = nn.relu(group_norm(w)(Conv(w, 3, impl=self.impl)(h)))
    h = jnp.mean(h, axis=(1, 2))
    return nn.Dense(self.embed_dim)(h)
