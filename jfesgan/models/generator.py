"""The FESGAN generator: encoder E (image -> identity code) and decoder G (code, expression -> image).

DCGAN-shaped: ``num_down`` stride-2 levels at R/2, ..., R/2**num_down with widths doubling from
``width`` (capped at ``max_width``), and nothing at full resolution but the input and output
layers, where a convolution costs the most and adds the least.  ``depth`` adds that many 3x3
stride-1 convolutions at every level of both (``model.g_depth``; 0, the default, is the plain
DCGAN shape, parameter for parameter).

``edit`` (``model.g_edit``) says how a *translation* is made (:data:`EDITS`):

- ``"none"`` (the paper's shape): it is re-drawn, x_t = G(E(x), c).
- ``"mask"``: the decoder also draws a mask m in [0, 1] and x_t = m * G(E(x), c) + (1 - m) * x,
  so that what the mask leaves out (hair, background, the shape of the face) is the input's own.
- ``"difference"``: the translation is the input plus the change the decoder draws between the
  two expressions for the same identity code,
  x_t = clip(x + G(E(x), c) - G(E(x), s(x)), -1, 1),
  where s(x) is the encoder's own estimate of the input's expression (a softmax head beside the
  code, trained on the real labels by the ``source`` term and read through a stop-gradient).
  Whatever the decoder gets wrong about the person alike in both drawings (blur, tone, detail
  its code cannot hold) cancels; what the expression changes is drawn.

New identities have no input to edit: with any ``edit`` they are the decoder's full drawing
G(z_p, c), and the reconstruction loss trains that full drawing (:func:`jfesgan.steps.synthesise`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jfesgan.models.common import check_resolution, level_widths
from jfesgan.models.layers import UPSAMPLERS, Conv, group_norm

# How a translation is made (``model.g_edit``): see the module's docstring.
EDITS = ("none", "mask", "difference")


class Encoder(nn.Module):
  """E: (N, R, R, C) image in [-1, 1] -> ((N, latent_dim) identity code in (-1, 1), and with
  ``num_classes`` > 0 the (N, num_classes) logits of the input's expression, else None)."""

  latent_dim: int = 64
  num_classes: int = 0  # > 0: also estimate the input's expression (edit="difference")
  width: int = 32
  max_width: int = 256
  num_down: int = 3
  depth: int = 0  # 3x3 stride-1 convolutions after each stride-2 one
  impl: str = "auto"
  # Compute dtype of activations (float32, or bfloat16 on accelerators); parameters stay float32
  # and the outputs are float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    check_resolution(x.shape[1], self.num_down)
    h = x.astype(self.dtype)
    for i, w in enumerate(level_widths(self.width, self.max_width, self.num_down)):
      h = nn.leaky_relu(Conv(w, 4, strides=2, impl=self.impl)(h), 0.2)
      for j in range(self.depth):
        h = nn.leaky_relu(Conv(w, 3, impl=self.impl, name=f"level{i}_conv{j}")(h), 0.2)
    h = h.reshape(h.shape[0], -1)
    z = jnp.tanh(nn.Dense(self.latent_dim, dtype=self.dtype)(h)).astype(jnp.float32)
    if not self.num_classes:
      return z, None
    return z, nn.Dense(self.num_classes, dtype=self.dtype, name="source")(h).astype(jnp.float32)


class Decoder(nn.Module):
  """G: (code (N, d), expression code (N, K)) -> (N, R, R, channels) image in [-1, 1].

  The expression code is any length-K vector: one-hot for a class, a convex mix for
  interpolation, a scaled one-hot for intensity.  It enters with the code at the bottleneck and
  modulates every level (FiLM: a per-channel scale and shift after normalisation), so that each
  scale can draw its part of the expression.
  """

  image_size: int = 48
  channels: int = 1
  width: int = 32
  max_width: int = 256
  num_down: int = 3
  depth: int = 0  # 3x3 stride-1 convolutions (each FiLM-modulated) at every level below R
  # Also draw an edit mask (one more output channel, a logit): edit="mask" (module docstring).
  mask: bool = False
  # Each 2x upsampling: "transpose" (a 4x4 stride-2 transposed convolution) or "resize" (nearest
  # neighbour and a 3x3 convolution: no checkerboard; the same cost).
  upsample: str = "transpose"
  impl: str = "auto"
  # Compute dtype of activations (float32, or bfloat16 on accelerators); parameters stay float32
  # and the outputs are float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """(image (N, R, R, channels) in [-1, 1], edit mask (N, R, R, 1) in [0, 1] or None)."""
    s = check_resolution(self.image_size, self.num_down)
    if self.upsample not in UPSAMPLERS:
      raise ValueError(f"model.g_upsample={self.upsample!r} must be one of {tuple(UPSAMPLERS)}")
    up = UPSAMPLERS[self.upsample]
    widths = level_widths(self.width, self.max_width, self.num_down)[::-1]
    z, c = z.astype(self.dtype), c.astype(self.dtype)

    def film(h, i, norm_name=None):
      w = h.shape[-1]
      gamma_beta = nn.Dense(2 * w, kernel_init=nn.initializers.zeros, dtype=self.dtype,
                            name=f"film{i}")(c)
      gamma, beta = jnp.split(gamma_beta[:, None, None, :], 2, axis=-1)
      return nn.relu(group_norm(w, name=norm_name, dtype=self.dtype)(h) * (1 + gamma) + beta)

    def deeper(h, i):
      for j in range(self.depth):
        conv = Conv(h.shape[-1], 3, use_bias=False, impl=self.impl, name=f"level{i}_conv{j}")
        h = film(conv(h), f"{i}_{j}", norm_name=f"level{i}_norm{j}")
      return h

    # Layers followed by normalisation carry no bias: it would be normalised away.
    h = nn.Dense(s * s * widths[0], use_bias=False, dtype=self.dtype)(jnp.concatenate([z, c], axis=-1))
    h = deeper(film(h.reshape(-1, s, s, widths[0]), 0), 0)
    for i, w in enumerate(widths[1:], start=1):
      h = deeper(film(up(w, use_bias=False, impl=self.impl)(h), i), i)
    out = up(self.channels + int(self.mask), impl=self.impl)(h)
    image = jnp.tanh(out[..., :self.channels]).astype(jnp.float32)
    if not self.mask:
      return image, None
    return image, jax.nn.sigmoid(out[..., self.channels:]).astype(jnp.float32)


class Generator(nn.Module):
  """E and G under one parameter tree ``{'encoder': ..., 'decoder': ...}``: the stage ``g``."""

  image_size: int = 48
  channels: int = 1
  latent_dim: int = 64
  width: int = 32
  max_width: int = 256
  num_down: int = 3
  depth: int = 0
  upsample: str = "transpose"  # the decoder's (Decoder.upsample)
  edit: str = "none"  # how translations are made: one of EDITS (module docstring)
  # Expression classes: the length of the expression code; the encoder's estimate of the input's
  # expression has as many (edit="difference" only).
  num_classes: int = 7
  impl: str = "auto"
  dtype: Any = jnp.float32

  def setup(self):
    if self.edit not in EDITS:
      raise ValueError(f"model.g_edit={self.edit!r} must be one of {EDITS}")
    widths = dict(width=self.width, max_width=self.max_width, num_down=self.num_down,
                  depth=self.depth, impl=self.impl, dtype=self.dtype)
    self.encoder = Encoder(latent_dim=self.latent_dim,
                           num_classes=self.num_classes if self.edit == "difference" else 0,
                           **widths)
    self.decoder = Decoder(image_size=self.image_size, channels=self.channels,
                           upsample=self.upsample, mask=self.edit == "mask", **widths)

  def encode(self, x: jax.Array) -> jax.Array:
    """Identity code E(x)."""
    return self.encoder(x)[0]

  def encode_source(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """(E(x), the logits of the encoder's estimate of x's expression; None unless
    edit="difference")."""
    return self.encoder(x)

  def decode(self, z: jax.Array, c: jax.Array) -> jax.Array:
    """Image G(z, c): the decoder's full drawing (a new identity from a prior code)."""
    return self.decoder(z, c)[0]

  def draw(self, z: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """(G(z, c), its edit mask or None without ``edit``)."""
    return self.decoder(z, c)

  def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
    """``x`` with expression ``c`` as ``edit`` makes it: G(E(x), c); that drawing blended into x
    through its mask; or x plus the drawn change from x's estimated expression to c."""
    z, source = self.encode_source(x)
    if self.edit != "difference":
      image, mask = self.draw(z, c)
      return blend(x, image, mask)
    s = expression_estimate(source).astype(c.dtype)
    # Two decoder calls rather than one over both halves: the exported graph's batch stays N.
    return shift(x, self.decode(z, c), self.decode(z, s))


def blend(x: jax.Array, image: jax.Array, mask: jax.Array | None) -> jax.Array:
  """``mask * image + (1 - mask) * x``: a drawing edited into its input; the drawing itself where
  there is no mask."""
  return image if mask is None else mask * image + (1.0 - mask) * x


def expression_estimate(source_logits: jax.Array) -> jax.Array:
  """The expression code of the encoder's estimate of its input's expression (edit="difference"):
  the softmax of its logits, read through a stop-gradient so that only the ``source`` term
  trains the estimate."""
  return jax.nn.softmax(jax.lax.stop_gradient(source_logits), axis=-1)


def shift(x: jax.Array, target: jax.Array, source: jax.Array) -> jax.Array:
  """``x`` changed by the difference between two drawings of its identity, ``target - source``,
  clipped to the image range [-1, 1] (edit="difference")."""
  return jnp.clip(x + target - source, -1.0, 1.0)
