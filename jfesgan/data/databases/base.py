"""The machinery every database builder shares: builder configs, records, cropping, bad input.

See :mod:`jfesgan.data.databases` for what the builders do; each database is a module of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from jfesgan.data import faces

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm")
# Files that operating systems leave in folders; never data.
JUNK_FILES = ("thumbs.db", "desktop.ini")


def visible(names: Iterable[str]) -> list[str]:
  """Sorted names without hidden and operating-system junk files."""
  return sorted(n for n in names if not n.startswith(".") and n.lower() not in JUNK_FILES)


def is_image(name: str) -> bool:
  """Whether a file name has an image extension."""
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


def read_files(paths: Sequence[str]) -> Callable[[], list[np.ndarray]]:
  """A reader of the image files ``paths`` (RGB frames)."""
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
  """Common machinery: features, cropping, the bad-input policy and its report.

  A database subclasses it with its ``MANUAL_DOWNLOAD_INSTRUCTIONS``, ``BUILDER_CONFIGS``,
  :meth:`class_names`, :meth:`_samples` and, where it has settings of its own, :meth:`options_from`
  (and :meth:`splits` where it has official splits).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  # The splits of databases without an official split: everything is ``train``.
  SPLITS: tuple[str, ...] = ("train",)

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    # Bad input left out under skip_bad_input, listed in the prepared dataset's metadata.json.
    self._skipped: list[dict] = []

  @classmethod
  def options_from(cls, data_cfg) -> dict:
    """The database's own builder options from a ``config.data`` section (none by default)."""
    del data_cfg
    return {}

  def splits(self, root: str) -> tuple[str, ...]:
    """The splits the manual folder ``root`` provides."""
    del root
    return self.SPLITS

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
    for cls in visible(os.listdir(root)):
      cdir = os.path.join(root, cls)
      if not os.path.isdir(cdir):
        self._bad(cdir, "expected only class folders here")
        continue
      if cls.lower() not in lookup:
        self._bad(cdir, f"unknown class folder; classes are {sorted(lookup)}")
        continue
      names = visible(os.listdir(cdir))
      if not names:
        self._bad(cdir, "empty class folder")
      for name in names:
        path = os.path.join(cdir, name)
        if not is_image(name):
          self._bad(path, f"not an image file (extensions {IMAGE_EXTENSIONS})")
          continue
        subject = subject_of(name)
        if subject is None:
          self._bad(path, "the subject regex does not match the file name")
          continue
        out.append(Sample(f"{cls}/{name}", lookup[cls.lower()], subject, path, read_files([path])))
    return out

  def _require(self, path: str, what: str = "folder") -> None:
    """Raises BadInputError naming ``path`` if it is missing, with the expected layout."""
    if not (os.path.isdir(path) if what == "folder" else os.path.isfile(path)):
      raise faces.BadInputError(path, f"missing {what}; the manual folder must follow the "
                                f"layout:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)  # TFDS raises with our instructions if missing/empty.
    self._skipped = []
    self._cropper = faces.FaceCropper(self.builder_config.crop)
    samples = self._samples(root)
    splits = self.splits(root)
    empty = [s for s in splits if not samples.get(s)]
    if empty:
      raise faces.BadInputError(root, f"no labelled items found for split(s) {empty}; the folder "
                                f"must follow the layout in the instructions:\n"
                                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    self.info.metadata["skipped"] = self._skipped
    # With data.align: the sequences cut unaligned because OpenCV did not find both eyes.
    self._unaligned = []
    self.info.metadata["unaligned"] = self._unaligned
    self.info.metadata["manual_dir"] = root
    return {split: self._generate_examples(samples[split], root) for split in splits}

  def _generate_examples(self, samples: list[Sample], root: str):
    for s in samples:
      try:
        frames = s.read()
        if not frames:
          raise faces.BadInputError(s.source, "no frames")
        box = self._cropper.box(frames[-1], s.source)
        crops = [self._cropper.crop(f, box) for f in frames]
        if self.builder_config.crop.align and box.eyes is None:
          self._unaligned.append(os.path.relpath(s.source, root) if os.path.isabs(s.source)
                                 else s.source)
      except faces.BadInputError as e:
        self._bad(e.path, e.reason)
        continue
      for i, crop in enumerate(crops):
        rel = os.path.relpath(s.source, root) if os.path.isabs(s.source) else s.source
        yield f"{s.key}#{i}", {"image": crop, "label": s.label, "subject": s.subject,
                               "source": f"{rel}#{i}"}


def source_fingerprint(root: str) -> str:
  """A fingerprint of the files under ``root`` by their content: every relative path, size and a
  hash of its bytes.  A prepared dataset is keyed by it, so an edited, added, removed or fixed file
  (even one replaced by another of the same size with its modification time restored), or another
  tree, is a new dataset, never a stale cache.  Reading is cheap next to preparing: measured in
  docs/data.md (36,000 FER2013-sized images).

  A file that cannot be read (a symlink loop, no permission) enters the fingerprint as unreadable,
  with its error, and is named as bad input by the builder when it reads it; a folder that cannot
  be listed is a :class:`~jfesgan.data.faces.BadInputError` naming it.
  """
  h = hashlib.sha1(os.path.realpath(root).encode())

  def unlistable(e: OSError) -> None:
    raise faces.BadInputError(e.filename or root, f"cannot list this folder ({e.strerror})") from e

  for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
    dirnames.sort()
    for name in sorted(filenames):
      path = os.path.join(dirpath, name)
      h.update(os.path.relpath(path, root).encode() + b"\0")
      try:
        with open(path, "rb") as f:
          h.update(hashlib.file_digest(f, "sha1").digest())
      except OSError as e:
        h.update(f"unreadable: {e.errno}".encode())
  return h.hexdigest()[:12]


def subject_ids(names: Iterable[str]) -> dict[str, int]:
  """Subject names -> int ids: the number in names like 'S010' / 'P001' when all share one prefix
  and the numbers are distinct, else the index in sorted order."""
  names = sorted(set(names))
  parsed = [re.fullmatch(r"([A-Za-z_\-]*)0*(\d+)", n) for n in names]
  if all(parsed) and len({m.group(1) for m in parsed}) == 1 \
      and len({int(m.group(2)) for m in parsed}) == len(names):
    return {n: int(m.group(2)) for n, m in zip(names, parsed)}
  return {n: i for i, n in enumerate(names)}
