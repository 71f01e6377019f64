"""Apply a trained recogniser to face images.

  jfesgan predict --workdir runs/ck48 photo1.png photos/ [--stage real] [--out preds.csv]

Each image (files, or every image in a folder, recursively) is cut out as the run's dataset was:
with its detector and margin (whole frames) or taken as a face already (pre-cropped data), then
resized to the run's size and channels.  The recogniser (joint R by default) runs batched and
jitted; writes a CSV (path, predicted label, one probability column per class) and prints the
images per second of the recognition itself (compilation apart).  A file that is not an image, an
image without a face, or a workdir without a finished recogniser is an error naming it.
"""

from __future__ import annotations

import csv
import os
import time

import numpy as np
from absl import app, flags

from jfesgan.data import faces
from jfesgan.data.databases.base import is_image, visible
from jfesgan.data.pipeline import to_float
from jfesgan.evaluation.restored import RestoredRecogniser
from jfesgan.run.flags import one_line_errors, parse_flags, quiet_tool


def image_paths(paths: list[str]) -> list[str]:
  """The image files named by ``paths``: files as given, folders searched recursively."""
  out = []
  for p in paths:
    if os.path.isdir(p):
      found = [os.path.join(d, n) for d, _, names in sorted(os.walk(p)) for n in visible(names)
               if is_image(n)]
      if not found:
        raise faces.BadInputError(p, "no image files in this folder")
      out += found
    elif os.path.isfile(p):
      out.append(p)
    else:
      raise faces.BadInputError(p, "no such file or folder")
  return out


def load_faces(paths: list[str], spec: faces.CropSpec,
               cropper: faces.FaceCropper | None = None) -> np.ndarray:
  """uint8 (N, size, size, channels) face crops of the image files, cut as ``spec`` says."""
  cropper = cropper or faces.FaceCropper(spec)
  crops = []
  for p in paths:
    rgb = faces.load_image(p)  # raises naming the file if it is not a readable image
    crops.append(cropper.crop(rgb, cropper.box(rgb, p)))
  return np.stack(crops)


def predict(rec: RestoredRecogniser, paths: list[str], batch_size: int = 64,
            cropper: faces.FaceCropper | None = None) -> tuple[np.ndarray, float]:
  """(class probabilities (N, K), images per second of the recognition after compilation)."""
  x = to_float(load_faces(paths, rec.crop, cropper))
  rec.probabilities(x[:1], batch_size)  # compile
  t = time.perf_counter()
  probs = rec.probabilities(x, batch_size)
  return probs, len(paths) / max(time.perf_counter() - t, 1e-9)


def write_csv(path: str, paths: list[str], probs: np.ndarray, class_names) -> None:
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["path", "label"] + [f"p_{c}" for c in class_names])
    for p, row in zip(paths, probs):
      w.writerow([p, class_names[int(row.argmax())]] + [f"{v:.6f}" for v in row])


def main(argv):
  f = flags.FLAGS
  quiet_tool()
  if len(argv) < 2:
    raise SystemExit("jfesgan.predict: name image files or folders after the flags")
  rec = RestoredRecogniser.load(f.workdir, f.stage)
  paths = image_paths(argv[1:])
  probs, rate = predict(rec, paths, f.batch_size)
  out = f.out or os.path.join(rec.workdir, "predictions.csv")
  write_csv(out, paths, probs, rec.class_names)
  for p, row in list(zip(paths, probs))[:10]:
    print(f"{p}: {rec.class_names[int(row.argmax())]} ({row.max():.2f})")
  if len(paths) > 10:
    print(f"... {len(paths) - 10} more")
  print(f"{len(paths)} images, {rate:.0f} images/s ({rec.stage} R of {rec.workdir}); CSV: {out}",
        flush=True)


def run() -> None:
  """``jfesgan predict`` (and ``python -m jfesgan.tools.predict``)."""
  flags.DEFINE_string("workdir", None, "Workdir of the trained run.", required=True)
  flags.DEFINE_string("stage", None, "'joint' or 'real' (default: joint if finished, else real).")
  flags.DEFINE_string("out", "", "CSV path (default <workdir>/predictions.csv).")
  flags.DEFINE_integer("batch_size", 64, "Images per jitted call.")
  app.run(one_line_errors(main), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
