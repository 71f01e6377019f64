"""FER2013 (Kaggle CSV or its image-folder export)."""

from __future__ import annotations

import csv
import os

import numpy as np

from jfesgan.data import faces
from jfesgan.data.databases.base import DatabaseConfig, ExpressionDatabase, Sample


class Fer2013(ExpressionDatabase):
  """FER2013: 35,887 48x48 gray faces, 7 classes, official Training / PublicTest / PrivateTest.

  Read from Kaggle's ``fer2013.csv`` (emotion, pixels, Usage) or from its image-folder export
  (``train/<class>/*.jpg``, ``test/<class>/*.jpg``; then there is no validation split).  There
  are no subject ids (``subject`` is -1).
  """

  EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
  USAGE = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
  SPLITS = ("train", "validation", "test")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  1. Sign in to Kaggle and accept the rules of "Challenges in Representation Learning: Facial
     Expression Recognition Challenge".
  2. Download `fer2013.tar.gz` (or `icml_face_data.csv`) and unpack it into the manual folder
     (`--config.data.manual_dir`, or `<data_dir>/downloads/manual`), which must then hold
       fer2013.csv            (columns emotion, pixels, Usage)
     or, for the image-folder export ("FER-2013" images), instead
       train/angry/*.jpg ... test/surprise/*.jpg   (classes angry disgust fear happy neutral sad
                                                     surprise; no validation split)
  """
  BUILDER_CONFIGS = [DatabaseConfig(crop=faces.CropSpec(48, 1, "none", 0.0), frames=1,
                                    name="default")]

  def splits(self, root):
    # The image-folder export has no validation split.
    return self.SPLITS if os.path.isfile(os.path.join(root, "fer2013.csv")) else ("train", "test")

  def class_names(self):
    return self.EMOTIONS

  def _samples(self, root):
    csv_path = os.path.join(root, "fer2013.csv")
    if os.path.isfile(csv_path):
      return self._csv_samples(csv_path)
    out = {}
    lookup = {e: i for i, e in enumerate(self.EMOTIONS)}
    for split in ("train", "test"):
      sdir = os.path.join(root, split)
      if not os.path.isdir(sdir):
        raise faces.BadInputError(sdir, "missing folder: expected fer2013.csv or train/ and test/ "
                                  "class folders:\n" + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
      out[split] = self._class_folder_samples(sdir, lookup, subject_of=lambda name: -1)
    return out

  def _csv_samples(self, path):
    out = {s: [] for s in self.SPLITS}
    with open(path, newline="") as f:
      reader = csv.DictReader(f)
      missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
      if missing:
        raise faces.BadInputError(path, f"missing columns {sorted(missing)}")
      for line, row in enumerate(reader, start=2):
        where = f"{path}:{line}"
        try:
          label = int(row["emotion"])
          pixels = np.array(row["pixels"].split(), dtype=np.int64)
          if not 0 <= label < 7 or pixels.size != 48 * 48 or pixels.min() < 0 or pixels.max() > 255:
            raise ValueError(f"emotion {label} not in 0..6 or not 2304 pixels in 0..255")
          split = self.USAGE[row["Usage"]]
        except (ValueError, KeyError, TypeError) as e:
          self._bad(where, f"row does not parse ({type(e).__name__}: {e})")
          continue
        img = np.repeat(pixels.astype(np.uint8).reshape(48, 48, 1), 3, axis=-1)
        out[split].append(Sample(f"row{line}", label, -1, where, lambda img=img: [img]))
    return out
