"""JAFFE, the Japanese Female Facial Expression database."""

from __future__ import annotations

import os
import re

from jfesgan.data import faces
from jfesgan.data.databases.base import (
  DatabaseConfig,
  ExpressionDatabase,
  Sample,
  is_image,
  read_files,
  subject_ids,
  visible,
)


class Jaffe(ExpressionDatabase):
  """The Japanese Female Facial Expression database: 213 images of 10 subjects, 7 classes.

  File names ``KA.AN1.39.tiff``: subject ``KA``, expression ``AN`` (AN DI FE HA NE SA SU).
  """

  CODES = {"AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happiness", "SA": "sadness",
           "SU": "surprise", "NE": "neutral"}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  1. Request JAFFE from its distribution page (Lyons, Kamachi, Gyoba; Zenodo record "The Japanese
     Female Facial Expression (JAFFE) Dataset"), accepting its conditions of use.
  2. Download and unpack the archive into the manual folder (`--config.data.manual_dir`, or
     `<data_dir>/downloads/manual`); the images may sit at its top or in one sub-folder:
       jaffe/KA.AN1.39.tiff  jaffe/KA.NE1.26.tiff ...   (subject.expression+index.id.tiff)
  """
  BUILDER_CONFIGS = [DatabaseConfig(crop=faces.CropSpec(48, 1, "haar", 0.1), frames=1,
                                    include_neutral=True, name="default")]

  def class_names(self):
    names = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
    return names + ("neutral",) if self.builder_config.include_neutral else names

  def _samples(self, root):
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
      dirnames[:] = visible(dirnames)
      files += [os.path.join(dirpath, f) for f in visible(filenames) if is_image(f)]
    names = {c: i for i, c in enumerate(self.class_names())}
    parsed = []
    for path in sorted(files):
      m = re.fullmatch(r"([A-Z]{2})\.([A-Z]{2})\d*\.\d+\.\w+", os.path.basename(path))
      if not m or m.group(2) not in self.CODES:
        self._bad(path, "file name is not JAFFE's SUBJECT.EXPRn.ID.tiff with EXPR in "
                  f"{sorted(self.CODES)}")
        continue
      cls = self.CODES[m.group(2)]
      if cls in names:
        parsed.append((path, m.group(1), names[cls]))
    ids = subject_ids(s for _, s, _ in parsed)
    return {"train": [Sample(os.path.basename(p), y, ids[s], p, read_files([p]))
                      for p, s, y in parsed]}
