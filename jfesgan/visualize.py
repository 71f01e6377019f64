"""Sample grids: held-out identities re-drawn with every expression, and new identities."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[-1, 1] float -> [0, 255] uint8."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid_image(cells: list[list[np.ndarray | None]], header: list[str], scale: int = 2,
               pad: int = 2) -> np.ndarray:
  """Lays out rows of (H, W, C) uint8 cells (None = blank) under a text header; returns RGB uint8."""
  h, w = next(c for row in cells for c in row if c is not None).shape[:2]
  ncols = max(len(r) for r in cells)
  ch, cw = h * scale, w * scale
  head = 14
  out = Image.new("RGB", (ncols * (cw + pad) + pad, head + len(cells) * (ch + pad) + pad), "white")
  draw = ImageDraw.Draw(out)
  font = ImageFont.load_default()
  for j, text in enumerate(header):
    draw.text((pad + j * (cw + pad) + 2, 1), text[:max(3, cw // 6)], fill="black", font=font)
  for i, row in enumerate(cells):
    for j, cell in enumerate(row):
      if cell is None:
        continue
      img = Image.fromarray(cell.squeeze(-1) if cell.shape[-1] == 1 else cell)
      img = img.convert("RGB").resize((cw, ch), Image.NEAREST)
      out.paste(img, (pad + j * (cw + pad), head + pad + i * (ch + pad)))
  return np.asarray(out)


def synthesis_grid(inputs: np.ndarray, recon: np.ndarray, translations: np.ndarray,
                   prior: np.ndarray, class_names: tuple[str, ...]) -> np.ndarray:
  """The FESGAN sample grid.

  Top block, one row per held-out identity: input | reconstruction | the identity with each
  expression (``translations`` (rows, K, H, W, C)).  Bottom block, one row per new identity drawn
  from the prior, with each expression (``prior`` (rows, K, H, W, C)).  All inputs in [-1, 1].
  """
  cells = [[to_uint8(inputs[i]), to_uint8(recon[i])] + [to_uint8(t) for t in translations[i]]
           for i in range(inputs.shape[0])]
  cells += [[None, None] + [to_uint8(t) for t in prior[i]] for i in range(prior.shape[0])]
  return grid_image(cells, ["input", "recon"] + list(class_names))


def save_png(image: np.ndarray, path: str) -> None:
  """Writes an (H, W, 3) uint8 image."""
  Image.fromarray(image).save(path)
