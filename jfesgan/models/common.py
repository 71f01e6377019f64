"""Shape helpers shared by the networks: level widths and the bottleneck resolution."""

from __future__ import annotations


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
