"""CK+ (the Extended Cohn-Kanade database)."""

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


class Ckplus(ExpressionDatabase):
  """The Extended Cohn-Kanade database (CK+): 327 labelled sequences of 118 subjects, 7 classes.

  The last ``frames`` frames of each labelled sequence (the apex) carry its emotion; with
  ``include_neutral`` the first frame of each labelled sequence is added as ``neutral``.
  """

  EMOTIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  1. Request access to CK+ at the database's site (Jeffrey Cohn's lab, University of Pittsburgh:
     "The Extended Cohn-Kanade Dataset (CK+)"), accepting its licence agreement.
  2. Download the archives `extended-cohn-kanade-images.zip` and `Emotion_labels.zip`.
  3. Unpack both into the manual folder (`--config.data.manual_dir`, or
     `<data_dir>/downloads/manual`), which must then hold:
       cohn-kanade-images/S005/001/S005_001_00000001.png ... (every frame of every sequence)
       Emotion/S005/001/S005_001_00000011_emotion.txt        (one number, 1-7, per labelled sequence)
  4. Run the job; faces are detected and cropped once, when the dataset is prepared.
  """
  BUILDER_CONFIGS = [DatabaseConfig(crop=faces.CropSpec(48, 1, "haar", 0.1), name="default")]

  def class_names(self):
    return self.EMOTIONS if self.builder_config.include_neutral else self.EMOTIONS[1:]

  def _samples(self, root):
    images, emotion = os.path.join(root, "cohn-kanade-images"), os.path.join(root, "Emotion")
    self._require(images)
    self._require(emotion)
    people = visible(os.listdir(emotion))
    subjects = subject_ids(people)
    out, n = [], self.builder_config.frames
    neutral = self.builder_config.include_neutral
    for subj in people:
      if not os.path.isdir(os.path.join(emotion, subj)):
        self._bad(os.path.join(emotion, subj), "expected a subject folder (Sxxx)")
        continue
      for seq in visible(os.listdir(os.path.join(emotion, subj))):
        seq_dir = os.path.join(emotion, subj, seq)
        if not os.path.isdir(seq_dir):
          self._bad(seq_dir, "expected a sequence folder (nnn)")
          continue
        labels = [f for f in visible(os.listdir(seq_dir)) if f.endswith("_emotion.txt")]
        if not labels:
          continue  # An unlabelled sequence: CK+ labels 327 of its 593.
        label_path = os.path.join(seq_dir, labels[0])
        try:
          with open(label_path) as f:
            code = float(f.read().split()[0])
        except (ValueError, IndexError, OSError) as e:
          self._bad(label_path, f"label file does not parse as one number ({e})")
          continue
        if code != int(code) or not 1 <= int(code) <= 7:
          self._bad(label_path, f"emotion code {code} is not an integer in 1..7")
          continue
        frame_dir = os.path.join(images, subj, seq)
        frames = ([f for f in visible(os.listdir(frame_dir)) if is_image(f)]
                  if os.path.isdir(frame_dir) else [])
        if not frames:
          self._bad(frame_dir, "labelled sequence without frames")
          continue
        paths = [os.path.join(frame_dir, f) for f in frames]
        label = int(code) - (0 if neutral else 1)
        out.append(Sample(f"{subj}_{seq}", label, subjects[subj], paths[-1],
                          read_files(paths[-n:])))
        if neutral:
          out.append(Sample(f"{subj}_{seq}_neutral", 0, subjects[subj], paths[0],
                            read_files(paths[:1])))
    return {"train": out}
