"""On-device augmentation of a recogniser's input images, inside the jitted step.

Each image gets its own random affine warp (rotation, isotropic scale, shift) and photometric
jitter (contrast about its mean, additive brightness).  The warp resamples bilinearly and takes
points that fall outside the image from its nearest edge pixel, so every output pixel comes from
inside the image (no black borders for a recogniser to read), and values stay in [-1, 1] (but for
``noise``, which is added last and not clipped: clipping would bias it at the extremes).
Labels are untouched: a recogniser sees the same expression moved a few pixels, turned a few
degrees, a little larger or smaller, lighter or darker.

Horizontal flips are not here: the batch pipeline mirrors images where ``data.hflip`` says, for
every stage (:class:`jfesgan.data.pipeline.Batches`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Augment:
  """Ranges of the random transformation (each drawn uniformly per image; 0 turns it off).

  Attributes:
    rotate: largest rotation, degrees.
    scale: largest relative change of size (zoom in [1 / (1 + scale), 1 + scale], log-uniform).
    shift: largest shift along each axis, as a fraction of the image side.
    contrast: largest relative change of contrast about the image mean.
    brightness: largest additive change of brightness, in [-1, 1] image units.
    noise: standard deviation of Gaussian noise added to every pixel, in [-1, 1] image units
      ("instance noise" when it is D_img's view, ``fesgan.dimg_augment``: real and synthetic
      images alike, so that the critic cannot tell a drawing from a photo by its fine grain and
      the generator is not pushed to draw the camera's or renderer's noise).
  """

  rotate: float = 0.0
  scale: float = 0.0
  shift: float = 0.0
  contrast: float = 0.0
  brightness: float = 0.0
  noise: float = 0.0

  @classmethod
  def from_config(cls, section) -> Augment:
    """From an ``augment`` config section (fields of the same names; ``noise`` may be absent, as
    in runs saved before it existed: 0)."""
    values = {f.name: float(section.get(f.name, 0.0) if f.name == "noise" else section[f.name])
              for f in dataclasses.fields(cls)}
    bad = {k: v for k, v in values.items() if v < 0}
    if bad:
      raise ValueError(f"augment: ranges must be >= 0, got {bad}")
    return cls(**values)

  @property
  def geometric(self) -> bool:
    return bool(self.rotate or self.scale or self.shift)

  @property
  def enabled(self) -> bool:
    return self.geometric or bool(self.contrast or self.brightness or self.noise)

  def __call__(self, images: jax.Array, rng: jax.Array) -> jax.Array:
    """Augments a batch (N, H, W, C) of images in [-1, 1]; the identity when nothing is enabled."""
    if not self.enabled:
      return images
    n = images.shape[0]
    k_geo, k_photo = jax.random.split(rng)
    if self.geometric:
      u = jax.random.uniform(k_geo, (n, 4), minval=-1.0, maxval=1.0)
      angle = u[:, 0] * math.radians(self.rotate)
      zoom = jnp.exp(u[:, 1] * math.log1p(self.scale))
      shift = u[:, 2:] * self.shift * jnp.asarray(images.shape[1:3], jnp.float32)
      images = jax.vmap(_warp)(images, angle, zoom, shift)
    if self.contrast or self.brightness:
      u = jax.random.uniform(k_photo, (n, 2, 1, 1, 1), minval=-1.0, maxval=1.0)
      mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
      images = (images - mean) * (1.0 + self.contrast * u[:, 0]) + mean + self.brightness * u[:, 1]
      images = jnp.clip(images, -1.0, 1.0)
    if self.noise:
      noise = jax.random.normal(jax.random.fold_in(rng, 2), images.shape, images.dtype)
      images = images + self.noise * noise
    return images


def _warp(image: jax.Array, angle: jax.Array, zoom: jax.Array, shift: jax.Array) -> jax.Array:
  """One (H, W, C) image rotated by ``angle`` (radians) and zoomed by ``zoom`` about its centre,
  then moved by ``shift`` (rows, cols) pixels; bilinear, edge pixels extended outwards."""
  h, w, _ = image.shape
  centre = jnp.array([(h - 1) / 2, (w - 1) / 2], jnp.float32)
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                            indexing="ij")
  out = jnp.stack([rows, cols]) - (centre + shift)[:, None, None]
  # The input point each output pixel shows: the inverse rotation and zoom.
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  src_r = (cos * out[0] + sin * out[1]) / zoom + centre[0]
  src_c = (-sin * out[0] + cos * out[1]) / zoom + centre[1]
  src_r = jnp.clip(src_r, 0.0, h - 1.0)
  src_c = jnp.clip(src_c, 0.0, w - 1.0)
  r0 = jnp.clip(jnp.floor(src_r), 0, h - 2).astype(jnp.int32)
  c0 = jnp.clip(jnp.floor(src_c), 0, w - 2).astype(jnp.int32)
  fr = (src_r - r0)[..., None]
  fc = (src_c - c0)[..., None]
  top = image[r0, c0] * (1 - fc) + image[r0, c0 + 1] * fc
  bottom = image[r0 + 1, c0] * (1 - fc) + image[r0 + 1, c0 + 1] * fc
  return top * (1 - fr) + bottom * fr


AUGMENT_FIELDS = (("real", "augment"), ("joint", "augment"), ("fesgan", "dimg_augment"))


def config_problems(config) -> list[str]:
  """Problems of the config's augmentation sections, each naming its field."""
  problems = []
  for name, field in AUGMENT_FIELDS:
    try:
      Augment.from_config(config[name][field])
    except ValueError as e:
      problems.append(f"config.{name}.{field}{str(e).removeprefix('augment')}")
  return problems
