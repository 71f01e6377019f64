"""R, the expression recogniser: image -> (embedding f, K logits)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jfesgan.models.trunk import ConvTrunk


class Recogniser(nn.Module):
  """R: image -> (penultimate embedding (N, D), logits (N, num_classes)).

  The trunk has the same structure as Phi's, so R can start from Phi's trunk weights.
  """

  num_classes: int = 7
  embed_dim: int = 64
  width: int = 32
  max_width: int = 256
  num_down: int = 3
  impl: str = "auto"
  dtype: Any = jnp.float32  # the trunk's compute dtype

  def setup(self):
    self.trunk = ConvTrunk(embed_dim=self.embed_dim, width=self.width, max_width=self.max_width,
                           num_down=self.num_down, impl=self.impl, dtype=self.dtype)
    self.head = nn.Dense(self.num_classes)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    f = nn.relu(self.trunk(x))
    return f, self.head(f)
