"""Draw with a trained generator (its moving average, g_ema): faces with other expressions, new
identities, and interpolations.

  jfesgan synthesize --workdir runs/ck48 --images faces/ [--expressions happy,surprise]
  jfesgan synthesize --workdir runs/ck48 --prior 8
  jfesgan synthesize --workdir runs/ck48 --images a.png --interpolate happy,surprise
  jfesgan synthesize --workdir runs/ck48 --images a.png,b.png --interpolate identity

Faces are cut out as the run's dataset was (its detector and margin, or taken as they are for
pre-cropped data).  Every call writes a contact sheet PNG into ``--out`` (default
``<workdir>/synthesize``); an interpolation also writes an animated GIF.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags
from PIL import Image

from jfesgan.data.pipeline import to_float
from jfesgan.evaluation import grids
from jfesgan.evaluation.restored import RestoredGenerator
from jfesgan.run.flags import one_line_errors, parse_flags, quiet_tool
from jfesgan.tools.predict import image_paths, load_faces


def expression_ids(gen: RestoredGenerator, names: str) -> list[int]:
  """Indices of comma-separated expression names (all when empty); unknown names are an error."""
  if not names:
    return list(range(len(gen.class_names)))
  wanted = [n.strip() for n in names.split(",") if n.strip()]
  unknown = [n for n in wanted if n not in gen.class_names]
  if unknown:
    raise ValueError(f"--expressions {unknown}: the run's expressions are {gen.class_names}")
  return [gen.class_names.index(n) for n in wanted]


def translate_sheet(gen: RestoredGenerator, x: np.ndarray, ids: list[int]) -> tuple[np.ndarray,
                                                                                    np.ndarray]:
  """(translations (N, len(ids), H, W, C) in [-1, 1], contact sheet RGB uint8): each face with
  each expression of ``ids``."""
  k = len(gen.class_names)
  onehot = np.eye(k, dtype=np.float32)[ids]
  out = gen.translate(np.repeat(x, len(ids), 0), np.tile(onehot, (len(x), 1)))
  out = out.reshape((len(x), len(ids)) + out.shape[1:])
  cells = [[grids.to_uint8(x[i])] + [grids.to_uint8(t) for t in out[i]]
           for i in range(len(x))]
  return out, grids.grid_image(cells, ["input"] + [gen.class_names[i] for i in ids])


def prior_sheet(gen: RestoredGenerator, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """``n`` new identities from the prior, each with every expression."""
  k = len(gen.class_names)
  z = np.random.default_rng(seed).uniform(-1, 1, (n, gen.latent_dim)).astype(np.float32)
  out = gen.decode(np.repeat(z, k, 0), np.tile(np.eye(k, dtype=np.float32), (n, 1)))
  out = out.reshape((n, k) + out.shape[1:])
  cells = [[grids.to_uint8(t) for t in row] for row in out]
  return out, grids.grid_image(cells, list(gen.class_names))


def interpolate(gen: RestoredGenerator, x: np.ndarray, what: str, frames: int,
                expression: int = 0) -> np.ndarray:
  """(frames, H, W, C) in [-1, 1]: the first face from one expression to another (``what`` =
  "a,b"), or from the first face's identity to the second's with expression ``expression``
  (``what`` = "identity")."""
  k = len(gen.class_names)
  t = np.linspace(0.0, 1.0, frames, dtype=np.float32)[:, None]
  z = gen.encode(x)
  if what == "identity":
    if len(x) < 2:
      raise ValueError("--interpolate identity needs two --images")
    codes = (1 - t) * z[0] + t * z[1]
    c = np.tile(np.eye(k, dtype=np.float32)[expression:expression + 1], (frames, 1))
    return gen.decode(codes.astype(np.float32), c)
  a, b = expression_ids(gen, what)[:2] if "," in what else (None, None)
  if a is None:
    raise ValueError(f"--interpolate {what!r}: give two expressions 'a,b' or 'identity'")
  eye = np.eye(k, dtype=np.float32)
  c = (1 - t) * eye[a] + t * eye[b]
  return gen.translate(np.repeat(x[:1], frames, 0), c.astype(np.float32))


def write_gif(frames: np.ndarray, path: str, scale: int = 3) -> None:
  imgs = [Image.fromarray(f.squeeze(-1) if f.shape[-1] == 1 else f).convert("RGB")
          for f in grids.to_uint8(frames)]
  imgs = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in imgs]
  imgs = imgs + imgs[-2:0:-1]  # there and back
  imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=80, loop=0)


def main(argv):
  del argv
  f = flags.FLAGS
  quiet_tool()
  gen = RestoredGenerator.load(f.workdir, f.stage)
  out = f.out or os.path.join(gen.workdir, "synthesize")
  os.makedirs(out, exist_ok=True)
  written = []
  paths = image_paths([p for p in f.images.split(",") if p]) if f.images else []
  x = to_float(load_faces(paths, gen.crop)) if paths else None
  if f.interpolate:
    if x is None:
      raise SystemExit("jfesgan.synthesize: --interpolate needs --images")
    frames = interpolate(gen, x, f.interpolate, f.frames,
                         expression_ids(gen, f.expressions)[0])
    strip = grids.grid_image([[grids.to_uint8(fr) for fr in frames]],
                                 [f.interpolate] + [""] * (len(frames) - 1))
    name = f.interpolate.replace(",", "_to_")
    written.append(os.path.join(out, f"interpolate_{name}.png"))
    grids.save_png(strip, written[-1])
    written.append(os.path.join(out, f"interpolate_{name}.gif"))
    write_gif(frames, written[-1])
  elif x is not None:
    _, sheet = translate_sheet(gen, x, expression_ids(gen, f.expressions))
    written.append(os.path.join(out, "translations.png"))
    grids.save_png(sheet, written[-1])
  if f.prior:
    _, sheet = prior_sheet(gen, f.prior, f.seed)
    written.append(os.path.join(out, "new_identities.png"))
    grids.save_png(sheet, written[-1])
  if not written:
    raise SystemExit("jfesgan.synthesize: give --images (with --expressions or --interpolate) "
                     "and/or --prior N")
  print(f"{gen.stage} generator of {gen.workdir}:", *written, sep="\n  ", flush=True)


def run() -> None:
  """``jfesgan synthesize`` (and ``python -m jfesgan.tools.synthesize``)."""
  flags.DEFINE_string("workdir", None, "Workdir of the trained run.", required=True)
  flags.DEFINE_string("stage", None, "'joint' or 'fesgan' (default: joint if finished, else fesgan).")
  flags.DEFINE_string("images", "", "Comma-separated face images or folders.")
  flags.DEFINE_string("expressions", "", "Comma-separated target expressions (default: all).")
  flags.DEFINE_integer("prior", 0, "Also draw this many new identities with every expression.")
  flags.DEFINE_string("interpolate", "", "'a,b' (two expressions of the first face) or 'identity' "
                      "(first face to second).")
  flags.DEFINE_integer("frames", 8, "Frames of an interpolation.")
  flags.DEFINE_integer("seed", 0, "Seed of the prior samples.")
  flags.DEFINE_string("out", "", "Output folder (default <workdir>/synthesize).")
  app.run(one_line_errors(main), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
