"""The MMI facial expression database."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence

import numpy as np

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


class Mmi(ExpressionDatabase):
  """The MMI facial expression database: posed sessions (videos) labelled with one of 6 emotions.

  Each session with an ``Emotion`` metatag gives ``frames`` frames around the middle of its video
  (MMI sequences run neutral -> apex -> neutral, so the apex is near the middle).
  """

  EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
  VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".wmv")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  1. Register for the MMI Facial Expression Database (mmifacedb.eu, iBUG, Imperial College) and
     accept its end-user licence agreement.
  2. Select the sessions you need (the paper family uses the frontal posed-expression sessions of
     Part I/II with an emotion label) and download them with their metadata.
  3. Unpack them into the manual folder (`--config.data.manual_dir`, or
     `<data_dir>/downloads/manual`), which must then hold one folder per session:
       Sessions/1766/session.xml    (with <Metatag Name="Emotion" Value="1..6"/> and the subject)
       Sessions/1766/S001-001.avi   (the video; or the session's frames as image files)
     Emotion codes: 1 anger, 2 disgust, 3 fear, 4 happiness, 5 sadness, 6 surprise. Sessions
     without an Emotion metatag are not expression sequences and are left out.
  """
  BUILDER_CONFIGS = [DatabaseConfig(crop=faces.CropSpec(48, 1, "haar", 0.1), name="default")]

  def class_names(self):
    return self.EMOTIONS

  def _parse_session(self, xml_path: str) -> tuple[int | None, str | None]:
    """(emotion code or None, subject name or None) from a session.xml."""
    root = ET.parse(xml_path).getroot()
    code = subject = None
    for el in root.iter():
      attrs = {k.lower(): v for k, v in el.attrib.items()}
      if el.tag.lower() == "metatag" and attrs.get("name", "").lower() == "emotion":
        code = int(attrs["value"])
      if el.tag.lower() == "subject" and "id" in attrs:
        subject = attrs["id"]
    return code, subject

  def _samples(self, root):
    sessions = os.path.join(root, "Sessions")
    self._require(sessions)
    items = []
    for sid in visible(os.listdir(sessions)):
      sdir = os.path.join(sessions, sid)
      xml_path = os.path.join(sdir, "session.xml")
      if not os.path.isfile(xml_path):
        self._bad(sdir, "session folder without session.xml")
        continue
      try:
        code, subject = self._parse_session(xml_path)
      except (ET.ParseError, ValueError, KeyError) as e:
        self._bad(xml_path, f"session.xml does not parse ({type(e).__name__}: {e})")
        continue
      if code is None:
        continue  # Not an emotion-labelled session (e.g. single action units).
      if not 1 <= code <= 6:
        self._bad(xml_path, f"Emotion value {code} is not in 1..6")
        continue
      files = visible(os.listdir(sdir))
      videos = [f for f in files if f.lower().endswith(self.VIDEO_EXTENSIONS)]
      frames = [f for f in files if is_image(f)]
      if subject is None:  # Fall back on the media name: S001-001.avi is subject 1.
        m = re.match(r"(S\d+)", (videos or frames or [""])[0])
        subject = m.group(1) if m else None
      if subject is None:
        self._bad(xml_path, "no subject id (no <subject id=...> and no S<nnn> media name)")
        continue
      if videos:
        src, read = os.path.join(sdir, videos[0]), self._video_reader(os.path.join(sdir, videos[0]))
      elif frames:
        paths = [os.path.join(sdir, f) for f in frames]
        src, read = sdir, read_files(self._middle(paths))
      else:
        self._bad(sdir, "session without a video or frames")
        continue
      items.append((sid, code - 1, subject, src, read))
    ids = subject_ids([str(s) for _, _, s, _, _ in items])
    return {"train": [Sample(f"session_{sid}", label, ids[str(subj)], src, read)
                      for sid, label, subj, src, read in items]}

  def _middle(self, seq: Sequence) -> list:
    n = min(self.builder_config.frames, len(seq))
    start = (len(seq) - n) // 2
    return list(seq[start:start + n])

  def _video_reader(self, path: str) -> Callable[[], list[np.ndarray]]:
    def read():
      try:
        import cv2  # pylint: disable=g-import-not-at-top
      except ImportError as e:
        raise ImportError("reading MMI videos needs OpenCV: pip install 'jfesgan[faces]'") from e
      cap = cv2.VideoCapture(path)
      frames = []
      while True:
        ok, frame = cap.read()
        if not ok:
          break
        frames.append(frame[..., ::-1].copy())  # BGR -> RGB
      cap.release()
      if not frames:
        raise faces.BadInputError(path, "video could not be decoded or has no frames")
      return self._middle(frames)
    return read
