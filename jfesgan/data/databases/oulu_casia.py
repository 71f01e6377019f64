"""Oulu-CASIA NIR&VIS."""

from __future__ import annotations

import os

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


def _oulu_config(modality: str, light: str) -> DatabaseConfig:
  return DatabaseConfig(crop=faces.CropSpec(48, 1, "haar", 0.1), name=f"{modality}_{light}",
                        options={"modality": modality, "light": light})


class OuluCasia(ExpressionDatabase):
  """Oulu-CASIA NIR&VIS: 80 subjects x 6 expressions, one sequence each, per modality and light.

  Builder configs ``{vis,nir}_{strong,weak,dark}``; the last ``frames`` frames of each sequence.
  """

  EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
  MODALITY_DIRS = {"vis": "VL", "nir": "NI"}
  LIGHT_DIRS = {"strong": "Strong", "weak": "Weak", "dark": "Dark"}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  1. Request the Oulu-CASIA NIR&VIS facial expression database from the University of Oulu
     (Center for Machine Vision and Signal Analysis), accepting its licence agreement.
  2. Download `OriginalImg.zip` (the whole frames; cropping is done here).
  3. Unpack it into the manual folder (`--config.data.manual_dir`, or
     `<data_dir>/downloads/manual`), which must then hold:
       OriginalImg/VL/Strong/P001/Anger/000.jpeg ...   (VL = visible light, NI = near infrared;
       OriginalImg/NI/Dark/P080/Surprise/...            lights Strong, Weak, Dark; subjects
                                                        P001-P080; classes Anger, Disgust, Fear,
                                                        Happiness, Sadness, Surprise)
  4. Pick the modality and light with the builder config, e.g. `oulu_casia/vis_strong`.
  """
  BUILDER_CONFIGS = [_oulu_config(m, light) for m in ("vis", "nir")
                     for light in ("strong", "weak", "dark")]

  @classmethod
  def options_from(cls, data_cfg):
    """``data.modality`` ("vis" or "nir") and ``data.light`` ("strong", "weak" or "dark")."""
    return {"modality": data_cfg.modality, "light": data_cfg.light}

  def class_names(self):
    return self.EMOTIONS

  def _samples(self, root):
    opts = self.builder_config.options
    base = os.path.join(root, "OriginalImg", self.MODALITY_DIRS[opts["modality"]],
                        self.LIGHT_DIRS[opts["light"]])
    self._require(base)
    people = visible(os.listdir(base))
    subjects = subject_ids(people)
    lookup = {e.lower(): i for i, e in enumerate(self.EMOTIONS)}
    out, n = [], self.builder_config.frames
    for person in people:
      pdir = os.path.join(base, person)
      if not os.path.isdir(pdir):
        self._bad(pdir, "expected a subject folder (P001 ...)")
        continue
      for cls in visible(os.listdir(pdir)):
        cdir = os.path.join(pdir, cls)
        if cls.lower() not in lookup:
          self._bad(cdir, f"unknown class folder; expected one of {self.EMOTIONS}")
          continue
        frames = [f for f in visible(os.listdir(cdir)) if is_image(f)]
        if not frames:
          self._bad(cdir, "sequence without frames")
          continue
        paths = [os.path.join(cdir, f) for f in frames[-n:]]
        out.append(Sample(f"{person}_{cls}", lookup[cls.lower()], subjects[person], paths[-1],
                          read_files(paths)))
    return {"train": out}
