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


def confusion_image(cm: np.ndarray, class_names: tuple[str, ...] | list[str], title: str = "",
                    cell: int = 44) -> np.ndarray:
  """A confusion matrix (rows true, columns predicted) as an RGB image: each cell shaded by its
  row-normalised rate and labelled with its count; the title shows the accuracy."""
  k = cm.shape[0]
  rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  left, top = 80, 34 + 14
  img = Image.new("RGB", (left + k * cell + 4, top + k * cell + 4), "white")
  draw = ImageDraw.Draw(img)
  font = ImageFont.load_default()
  acc = np.trace(cm) / max(cm.sum(), 1)
  draw.text((4, 2), f"{title}: accuracy {acc:.3f} (rows: true, columns: predicted)", fill="black",
            font=font)
  for j, name in enumerate(class_names):
    draw.text((left + j * cell + 2, 34), name[:7], fill="black", font=font)
    draw.text((4, top + j * cell + cell // 2 - 6), name[:12], fill="black", font=font)
  for i in range(k):
    for j in range(k):
      shade = int(255 * (1 - rates[i, j]))
      x0, y0 = left + j * cell, top + i * cell
      draw.rectangle([x0, y0, x0 + cell - 2, y0 + cell - 2], fill=(shade, shade, 255))
      draw.text((x0 + 4, y0 + cell // 2 - 6), str(int(cm[i, j])),
                fill="white" if rates[i, j] > 0.5 else "black", font=font)
  return np.asarray(img)
