"""A compact convolutional trunk shared by the identity network Phi and the recogniser R."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jfesgan.models.common import check_resolution, level_widths, standardise
from jfesgan.models.layers import Conv


class ConvTrunk(nn.Module):
  """Image -> (N, embed_dim) feature: per level a stride-2 conv then a 3x3 conv, then a dense layer.

  No normalisation layers: with GroupNorm the recogniser sat at chance for hundreds of steps on
  the procedural faces (the expression cues are small and per-sample normalisation washes them
  out early on); without it, it learns.  The spatial map is flattened rather than pooled, since
  where a cue sits (brow or mouth) is the cue.
  """

  embed_dim: int = 64
  width: int = 32
  max_width: int = 256
  num_down: int = 3
  impl: str = "auto"
  # Compute dtype of activations (float32, or bfloat16 on accelerators); parameters stay float32
  # and the outputs are float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    check_resolution(x.shape[1], self.num_down)
    widths = level_widths(self.width, self.max_width, self.num_down)
    h = standardise(x).astype(self.dtype)
    for w in widths:
      h = nn.relu(Conv(w, 4, strides=2, impl=self.impl)(h))
      h = nn.relu(Conv(w, 3, impl=self.impl)(h))
    h = h.reshape(h.shape[0], -1)
    return nn.Dense(self.embed_dim, dtype=self.dtype)(h).astype(jnp.float32)
