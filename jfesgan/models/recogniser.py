"""R, the expression recogniser: image -> (embedding f, K logits)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jfesgan.models.residual import ResidualTrunk
from jfesgan.models.trunk import ConvTrunk

# model.r_arch: R's trunk family. "trunk" is ConvTrunk, the design D_img and Phi share (R can then
# start from Phi's trunk); "residual" is ResidualTrunk, another family, for judges of synthesis.
R_ARCHS = ("trunk", "residual")


class Recogniser(nn.Module):
  """R: image -> (penultimate embedding (N, D), logits (N, num_classes)).

  With ``arch="trunk"`` the trunk has the same structure as Phi's, so R can start from Phi's
  trunk weights; ``arch="residual"`` builds it of another family (:mod:`jfesgan.models.residual`).
  """

  num_classes: int = 7
  embed_dim: int = 64
  width: int = 32
  max_width: int = 256
  num_down: int = 3
  impl: str = "auto"
  dtype: Any = jnp.float32  # the trunk's compute dtype
  arch: str = "trunk"  # one of R_ARCHS

  def setup(self):
    if self.arch == "trunk":
      self.trunk = ConvTrunk(embed_dim=self.embed_dim, width=self.width, max_width=self.max_width,
                             num_down=self.num_down, impl=self.impl, dtype=self.dtype)
    elif self.arch == "residual":
      self.trunk = ResidualTrunk(embed_dim=self.embed_dim, width=self.width,
                                 max_width=self.max_width, num_down=self.num_down, dtype=self.dtype)
    else:
      raise ValueError(f"model.r_arch={self.arch!r} must be one of {R_ARCHS}")
    self.head = nn.Dense(self.num_classes)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    f = nn.relu(self.trunk(x))
    return f, self.head(f)
