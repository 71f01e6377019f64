"""RAF-DB, basic emotions."""

from __future__ import annotations

import os

from jfesgan.data import faces
from jfesgan.data.databases.base import DatabaseConfig, ExpressionDatabase, Sample, read_files


class Rafdb(ExpressionDatabase):
  """RAF-DB, basic emotions: 15,339 in-the-wild faces, 7 classes, official train / test lists.

  Uses the aligned 100x100 faces (``basic/Image/aligned``) with ``detector="none"``; no subject
  ids (``subject`` is -1).
  """

  # Label codes 1..7 of list_patition_label.txt.
  EMOTIONS = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
  SPLITS = ("train", "test")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  1. Request RAF-DB from its authors (Shan Li, Weihong Deng; Beijing University of Posts and
     Telecommunications: "Real-world Affective Faces Database"), signing its agreement.
  2. Download the basic-emotion part and unpack it into the manual folder
     (`--config.data.manual_dir`, or `<data_dir>/downloads/manual`), which must then hold
       basic/EmoLabel/list_patition_label.txt     (lines "train_00001.jpg 5", labels 1-7)
       basic/Image/aligned/train_00001_aligned.jpg ...
  """
  BUILDER_CONFIGS = [DatabaseConfig(crop=faces.CropSpec(48, 1, "none", 0.0), frames=1,
                                    name="default")]

  def class_names(self):
    return self.EMOTIONS

  def _samples(self, root):
    labels = os.path.join(root, "basic", "EmoLabel", "list_patition_label.txt")
    images = os.path.join(root, "basic", "Image", "aligned")
    self._require(labels, "file")
    self._require(images)
    out = {s: [] for s in self.SPLITS}
    with open(labels) as f:
      for line_no, line in enumerate(f, start=1):
        if not line.strip():
          continue
        where = f"{labels}:{line_no}"
        parts = line.split()
        try:
          name, code = parts[0], int(parts[1])
          split = name.split("_")[0]
          if len(parts) != 2 or split not in out or not 1 <= code <= 7:
            raise ValueError("expected '<train|test>_NNNNN.jpg <1-7>'")
        except (ValueError, IndexError) as e:
          self._bad(where, f"line does not parse: {line.strip()!r} ({e})")
          continue
        stem, ext = os.path.splitext(name)
        path = os.path.join(images, f"{stem}_aligned{ext}")
        out[split].append(Sample(stem, code - 1, -1, path, read_files([path])))
    return out
