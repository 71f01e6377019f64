"""Any class-per-folder tree of face images (e.g. CK+48)."""

from __future__ import annotations

import os
import re

from jfesgan.data import faces
from jfesgan.data.databases.base import DatabaseConfig, ExpressionDatabase, subject_ids


class ExpressionFolder(ExpressionDatabase):
  """Any class-per-folder tree of face images: ``<root>/<class>/<image>``.

  ``options["classes"]`` names the classes (folder names, case-insensitive; label = position);
  ``options["subject_regex"]`` extracts the subject from a file name (its first group; the whole
  match without a group); an empty regex means no subject ids (-1).  The default suits CK+48
  (``S010_004_00000017.png`` -> subject 10) and its seven class folders.
  """

  DEFAULT_CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  1. Put your face images in one folder per class, e.g. for CK+48:
       <folder>/anger/S010_004_00000017.png ... <folder>/surprise/...
  2. Point the builder at it: `--config.data.manual_dir=<folder>` (configs/expression_folder.py),
     and name the classes (`--config.data.classes`) and the regex that extracts the subject id
     from a file name (`--config.data.subject_regex`, default '^(S\\d+)_').
  """
  BUILDER_CONFIGS = [DatabaseConfig(
      crop=faces.CropSpec(48, 1, "none", 0.0), frames=1, name="ckplus48",
      options={"classes": DEFAULT_CLASSES, "subject_regex": r"^(S\d+)_"})]

  @classmethod
  def options_from(cls, data_cfg):
    """``data.classes`` (folder names, in label order) and ``data.subject_regex``."""
    return {"classes": tuple(data_cfg.classes), "subject_regex": data_cfg.subject_regex}

  def class_names(self):
    return tuple(self.builder_config.options.get("classes", self.DEFAULT_CLASSES))

  def _samples(self, root):
    regex = self.builder_config.options.get("subject_regex", "")
    pattern = re.compile(regex) if regex else None

    def name_of(fname: str) -> str | None:
      m = pattern.search(fname)
      return None if m is None else (m.group(1) if m.groups() else m.group(0))

    names = {}
    if pattern is not None:
      for _, _, filenames in os.walk(root):
        for f in filenames:
          name = name_of(f)
          if name is not None:
            names[f] = name
    ids = subject_ids(set(names.values()))
    lookup = {c.lower(): i for i, c in enumerate(self.class_names())}
    subject_of = ((lambda f: ids[names[f]] if f in names else None) if pattern is not None
                  else (lambda f: -1))
    return {"train": self._class_folder_samples(root, lookup, subject_of)}
