"""Phi, the identity network of the identity-preserving loss, trained on subject ids (stage 0)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jfesgan.models.trunk import ConvTrunk


class IdentityNet(nn.Module):
  """Phi: image -> (unit-norm identity embedding (N, D), subject logits (N, num_subjects)).

  The subject head is a cosine classifier (normalised weights, fixed scale), so the embedding
  itself, not its norm, carries identity; the identity loss compares unit embeddings.
  """

  num_subjects: int
  embed_dim: int = 64
  width: int = 32
  max_width: int = 256
  num_down: int = 3
  scale: float = 16.0
  impl: str = "auto"
  dtype: Any = jnp.float32  # the trunk's compute dtype

  def setup(self):
    self.trunk = ConvTrunk(embed_dim=self.embed_dim, width=self.width, max_width=self.max_width,
                           num_down=self.num_down, impl=self.impl, dtype=self.dtype)
    # One direction per training subject: the cosine classifier's weights.
    self.subject_directions = self.param("subject_directions", nn.initializers.normal(1.0),
                                         (self.embed_dim, self.num_subjects))

  def embed(self, x: jax.Array) -> jax.Array:
    """Unit-norm identity embedding."""
    f = self.trunk(x)
    return f / (jnp.linalg.norm(f, axis=-1, keepdims=True) + 1e-6)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    e = self.embed(x)
    d = self.subject_directions
    w = d / (jnp.linalg.norm(d, axis=0, keepdims=True) + 1e-6)
    return e, self.scale * (e @ w)
