"""TFDS builders of the real facial-expression databases, read from the folder a user downloaded.

These databases are licence-gated: nobody may redistribute them, so each builder reads the files
from a *manual* folder (TFDS's manual-download convention: ``download_config.manual_dir``, by
default ``<data_dir>/downloads/manual``), in the layout the database's owners distribute, as its
``MANUAL_DOWNLOAD_INSTRUCTIONS`` describe.  A missing or empty folder raises TFDS's error with
those instructions.  Faces are cropped once, when the builder is prepared (:mod:`faces`), and
written as ``Tensor(uint8)`` features to ``array_record`` files, read back with
``as_data_source()`` without TensorFlow.

Every record has ``image`` (size, size, channels) uint8, ``label`` (a ClassLabel), ``subject``
(int32; -1 where the database has no subject ids) and ``source`` (the file it came from, and the
frame).  Databases without an official split have one split, ``train``, holding everything
(subject-independent folds are made from ``subject``: :mod:`splits`); FER2013 and RAF-DB keep
their official splits.

Bad input (an unreadable image, a label file that does not parse, an unknown class folder, a
sequence without frames, a face that cannot be found) raises :class:`faces.BadInputError` naming
the file, unless the builder config's ``skip_bad_input`` is set: then the item is left out and
listed, with its reason, in the dataset's ``metadata.json`` (``skipped``) and in the log.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import re
import xml.etree.ElementTree as ET
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from jfesgan.data import faces

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm")
# Files that operating systems leave in folders; never data.
JUNK_FILES = ("thumbs.db", "desktop.ini")


def _visible(names: Iterable[str]) -> list[str]:
  return sorted(n for n in names if not n.startswith(".") and n.lower() not in JUNK_FILES)


def _is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclasses.dataclass
class Sample:
  """One labelled item: ``read()`` returns its RGB frames; each frame becomes one record.

  The face box is found on the last frame (the apex of a sequence) and used for every frame, so
  the frames of a sequence are cropped identically.
  """

  key: str
  label: int
  subject: int
  source: str
  read: Callable[[], list[np.ndarray]]


def _read_files(paths: Sequence[str]) -> Callable[[], list[np.ndarray]]:
  return lambda: [faces.load_image(p) for p in paths]


class DatabaseConfig(tfds.core.BuilderConfig):
  """A database's preparation: crop, frames per sequence, neutral class, bad-input policy.

  ``options`` holds database-specific settings (Oulu-CASIA's modality and light, the
  expression_folder's classes and subject regex).  The config name encodes every field, so a
  changed setting is a new dataset rather than a stale cache.
  """

  def __init__(self, *, crop: faces.CropSpec, frames: int = 3, include_neutral: bool = False,
               skip_bad_input: bool = False, options: dict | None = None, name: str | None = None,
               description: str = ""):
    options = dict(options or {})
    if frames < 1:
      raise ValueError(f"frames={frames} must be >= 1")
    auto = (f"{crop.tag}_f{frames}{'_neutral' if include_neutral else ''}"
            f"{'_skipbad' if skip_bad_input else ''}")
    if options:
      readable = [str(options[k]) for k in ("modality", "light") if k in options]
      digest = hashlib.sha1(repr(sorted(options.items())).encode()).hexdigest()[:8]
      auto = "_".join([auto, *readable, digest])
    super().__init__(name=name or auto, description=description or f"{auto} {options}")
    self.crop, self.frames, self.include_neutral = crop, frames, include_neutral
    self.skip_bad_input, self.options = skip_bad_input, options


class ExpressionDatabase(tfds.core.GeneratorBasedBuilder):
  """Common machinery: features, cropping, the bad-input policy and its report."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  # Split name -> kept for subclasses with official splits.
  SPLITS: tuple[str, ...] = ("train",)

  def class_names(self) -> tuple[str, ...]:
    raise NotImplementedError

  def _samples(self, root: str) -> dict[str, list[Sample]]:
    """Split -> the database's labelled items under ``root``; calls ``self._bad`` on bad input."""
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__class__.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(c.crop.size, c.crop.size, c.crop.channels),
                                          dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=list(self.class_names())),
            "subject": tfds.features.Scalar(dtype=np.int32),
            "source": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        metadata=tfds.core.MetadataDict(),
    )

  def _bad(self, path: str, reason: str) -> None:
    """Raises BadInputError for ``path``, or records it when the config skips bad input."""
    if not self.builder_config.skip_bad_input:
      raise faces.BadInputError(path, reason + " (set skip_bad_input to leave such items out and "
                                "list them in the dataset's metadata.json)")
    self._skipped.append({"path": str(path), "reason": reason})
    logging.warning("skipped %s: %s", path, reason)

  def _class_folder_samples(self, root: str, lookup: dict[str, int],
                              subject_of: Callable[[str], int | None]) -> list[Sample]:
    """Samples of ``root/<class>/<image>``; unknown class folders and non-images are bad input."""
    out = []
    for cls in _visible(os.listdir(root)):
      cdir = os.path.join(root, cls)
      if not os.path.isdir(cdir):
        self._bad(cdir, "expected only class folders here")
        continue
      if cls.lower() not in lookup:
        self._bad(cdir, f"unknown class folder; classes are {sorted(lookup)}")
        continue
      for name in _visible(os.listdir(cdir)):
        path = os.path.join(cdir, name)
        if not _is_image(name):
          self._bad(path, f"not an image file (extensions {IMAGE_EXTENSIONS})")
          continue
        subject = subject_of(name)
        if subject is None:
          self._bad(path, "the subject regex does not match the file name")
          continue
        out.append(Sample(f"{cls}/{name}", lookup[cls.lower()], subject, path, _read_files([path])))
    return out

  def _require(self, path: str, what: str = "folder") -> None:
    """Raises BadInputError naming ``path`` if it is missing, with the expected layout."""
    if not (os.path.isdir(path) if what == "folder" else os.path.isfile(path)):
      raise faces.BadInputError(path, f"missing {what}; the manual folder must follow the "
                                f"layout:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)  # TFDS raises with our instructions if missing/empty.
    self._skipped: list[dict] = []
    self._cropper = faces.FaceCropper(self.builder_config.crop)
    samples = self._samples(root)
    empty = [s for s in self.SPLITS if not samples.get(s)]
    if empty:
      raise faces.BadInputError(root, f"no labelled items found for split(s) {empty}; the folder "
                                f"must follow the layout in the instructions:\n"
                                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    self.info.metadata["skipped"] = self._skipped
    self.info.metadata["manual_dir"] = root
    return {split: self._generate_examples(samples[split], root) for split in self.SPLITS}

  def _generate_examples(self, samples: list[Sample], root: str):
    for s in samples:
      try:
        frames = s.read()
        if not frames:
          raise faces.BadInputError(s.source, "no frames")
        box = self._cropper.box(frames[-1], s.source)
        crops = [self._cropper.crop(f, box) for f in frames]
      except faces.BadInputError as e:
        self._bad(e.path, e.reason)
        continue
      for i, crop in enumerate(crops):
        rel = os.path.relpath(s.source, root) if os.path.isabs(s.source) else s.source
        yield f"{s.key}#{i}", {"image": crop, "label": s.label, "subject": s.subject,
                               "source": f"{rel}#{i}"}


def subject_ids(names: Iterable[str]) -> dict[str, int]:
  """Subject names -> int ids: the number in names like 'S010' / 'P001' when all share one prefix
  and the numbers are distinct, else the index in sorted order."""
  names = sorted(set(names))
  parsed = [re.fullmatch(r"([A-Za-z_\-]*)0*(\d+)", n) for n in names]
  if all(parsed) and len({m.group(1) for m in parsed}) == 1 \
      and len({int(m.group(2)) for m in parsed}) == len(names):
    return {n: int(m.group(2)) for n, m in zip(names, parsed)}
  return {n: i for i, n in enumerate(names)}


# ----------------------------------------------------------------------------------------------
# CK+


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
    people = _visible(os.listdir(emotion))
    subjects = subject_ids(people)
    out, n = [], self.builder_config.frames
    neutral = self.builder_config.include_neutral
    for subj in people:
      if not os.path.isdir(os.path.join(emotion, subj)):
        self._bad(os.path.join(emotion, subj), "expected a subject folder (Sxxx)")
        continue
      for seq in _visible(os.listdir(os.path.join(emotion, subj))):
        seq_dir = os.path.join(emotion, subj, seq)
        if not os.path.isdir(seq_dir):
          self._bad(seq_dir, "expected a sequence folder (nnn)")
          continue
        labels = [f for f in _visible(os.listdir(seq_dir)) if f.endswith("_emotion.txt")]
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
        frames = ([f for f in _visible(os.listdir(frame_dir)) if _is_image(f)]
                  if os.path.isdir(frame_dir) else [])
        if not frames:
          self._bad(frame_dir, "labelled sequence without frames")
          continue
        paths = [os.path.join(frame_dir, f) for f in frames]
        label = int(code) - (0 if neutral else 1)
        out.append(Sample(f"{subj}_{seq}", label, subjects[subj], paths[-1],
                          _read_files(paths[-n:])))
        if neutral:
          out.append(Sample(f"{subj}_{seq}_neutral", 0, subjects[subj], paths[0],
                            _read_files(paths[:1])))
    return {"train": out}


# ----------------------------------------------------------------------------------------------
# Oulu-CASIA


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
  BUILDER_CONFIGS = [_oulu_config(m, l) for m in ("vis", "nir") for l in ("strong", "weak", "dark")]

  def class_names(self):
    return self.EMOTIONS

  def _samples(self, root):
    opts = self.builder_config.options
    base = os.path.join(root, "OriginalImg", self.MODALITY_DIRS[opts["modality"]],
                        self.LIGHT_DIRS[opts["light"]])
    self._require(base)
    people = _visible(os.listdir(base))
    subjects = subject_ids(people)
    lookup = {e.lower(): i for i, e in enumerate(self.EMOTIONS)}
    out, n = [], self.builder_config.frames
    for person in people:
      pdir = os.path.join(base, person)
      if not os.path.isdir(pdir):
        self._bad(pdir, "expected a subject folder (P001 ...)")
        continue
      for cls in _visible(os.listdir(pdir)):
        cdir = os.path.join(pdir, cls)
        if cls.lower() not in lookup:
          self._bad(cdir, f"unknown class folder; expected one of {self.EMOTIONS}")
          continue
        frames = [f for f in _visible(os.listdir(cdir)) if _is_image(f)]
        if not frames:
          self._bad(cdir, "sequence without frames")
          continue
        paths = [os.path.join(cdir, f) for f in frames[-n:]]
        out.append(Sample(f"{person}_{cls}", lookup[cls.lower()], subjects[person], paths[-1],
                          _read_files(paths)))
    return {"train": out}


# ----------------------------------------------------------------------------------------------
# MMI


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
    for sid in _visible(os.listdir(sessions)):
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
      files = _visible(os.listdir(sdir))
      videos = [f for f in files if f.lower().endswith(self.VIDEO_EXTENSIONS)]
      frames = [f for f in files if _is_image(f)]
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
        src, read = sdir, _read_files(self._middle(paths))
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


# ----------------------------------------------------------------------------------------------
# JAFFE


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
      dirnames[:] = _visible(dirnames)
      files += [os.path.join(dirpath, f) for f in _visible(filenames) if _is_image(f)]
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
    return {"train": [Sample(os.path.basename(p), y, ids[s], p, _read_files([p]))
                      for p, s, y in parsed]}


# ----------------------------------------------------------------------------------------------
# FER2013


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

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    if not os.path.isfile(os.path.join(root, "fer2013.csv")):
      self.SPLITS = ("train", "test")  # The folder export has no validation split.
    return super()._split_generators(dl_manager)

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


# ----------------------------------------------------------------------------------------------
# RAF-DB


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
        out[split].append(Sample(stem, code - 1, -1, path, _read_files([path])))
    return out


# ----------------------------------------------------------------------------------------------
# Any class-per-folder tree


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


BUILDERS = {"ckplus": Ckplus, "oulu_casia": OuluCasia, "mmi": Mmi, "jaffe": Jaffe,
            "fer2013": Fer2013, "rafdb": Rafdb, "expression_folder": ExpressionFolder}


def config_from(data_cfg) -> DatabaseConfig:
  """The builder config described by a ``config.data`` section of a real database."""
  crop = faces.CropSpec(data_cfg.image_size, data_cfg.channels, data_cfg.detector,
                        data_cfg.margin)
  options = {}
  if data_cfg.name == "oulu_casia":
    options = {"modality": data_cfg.modality, "light": data_cfg.light}
  elif data_cfg.name == "expression_folder":
    options = {"classes": tuple(data_cfg.classes), "subject_regex": data_cfg.subject_regex}
  return DatabaseConfig(crop=crop, frames=data_cfg.frames, include_neutral=data_cfg.include_neutral,
                        skip_bad_input=data_cfg.skip_bad_input, options=options)


def builder(data_cfg) -> ExpressionDatabase:
  """The prepared builder of the database named by ``data_cfg.name`` (prepared on first use)."""
  cls = BUILDERS[data_cfg.name]
  config = config_from(data_cfg)
  registered = {c.name: c for c in cls.BUILDER_CONFIGS}
  # Pass a registered config by name (TFDS refuses a custom config named like a registered one).
  for name, c in registered.items():
    if (c.crop, c.frames, c.include_neutral, c.skip_bad_input, c.options) == (
        config.crop, config.frames, config.include_neutral, config.skip_bad_input, config.options):
      config = name
      break
  b = cls(config=config, data_dir=data_cfg.data_dir or None)
  manual = os.path.expanduser(data_cfg.manual_dir) if data_cfg.manual_dir else None
  b.download_and_prepare(file_format="array_record",
                         download_config=tfds.download.DownloadConfig(manual_dir=manual))
  skipped = b.info.metadata.get("skipped", [])
  if skipped:
    logging.warning("%s/%s: %d bad input item(s) were skipped when it was prepared "
                    "(skip_bad_input); they are listed in %s", cls.name, b.builder_config.name,
                    len(skipped), os.path.join(b.data_dir, "metadata.json"))
  return b
