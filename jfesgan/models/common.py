"""Helpers shared by the networks: level widths, the bottleneck resolution, per-image
standardisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def standardise(x: jax.Array) -> jax.Array:
  """Each image to zero mean and unit standard deviation over its pixels and channels.  Lighting
  and skin tone are nuisances for both identity (mostly) and expression; removing them up front
  lets the first layers look for shape (the trunks of Phi, D_img and R)."""
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) / (jnp.std(x, axis=(1, 2, 3), keepdims=True) + 1e-3)


def level_widths(width: int, max_width: int, num_down: int) -> list[int]:
  """Channel widths at resolutions R/2, R/4, ..., R/2**num_down (doubling, capped)."""
  return [min(width * 2**i, max_width) for i in range(num_down)]


def check_resolution(image_size: int, num_down: int) -> int:
  """Returns the bottleneck size image_size / 2**num_down, or raises if it is not whole and >= 2."""
  s = image_size // 2**num_down
  if num_down < 1 or s * 2**num_down != image_size or s < 2:
    raise ValueError(f"data.image_size={image_size} must be divisible by 2**model.num_down="
                     f"{2**num_down} (num_down >= 1) with a bottleneck of at least 2x2")
  return s
