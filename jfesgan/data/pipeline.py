"""The input pipeline: a dataset as in-memory arrays, and deterministic, resumable batches.

The facial-expression databases of this method are small (a few thousand images), so a dataset
is read once from its TFDS ``array_record`` files into numpy.  Batches are a pure function of the
step (:meth:`Batches.at`): a resumed run sees exactly the batches it would have seen, with no
iterator state to checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from jfesgan.data import classes, procedural, splits

# truth(subject, label, extras) -> float32 images in [0, 1]: the clean rendering of each person
# with expression ``label``, in the pose and framing recorded in ``extras`` (the rows' extras).
Truth = Callable[[np.ndarray, np.ndarray, dict[str, np.ndarray]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """Images uint8 (N, R, R, C), expression labels and subject ids (N,), plus optional extras.

  ``truth``, where the dataset can render any of its people with any expression (the procedural
  faces), is the ground truth for synthesis: see :meth:`render_truth`.
  """

  image: np.ndarray
  label: np.ndarray
  subject: np.ndarray
  class_names: tuple[str, ...]
  extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  truth: Truth | None = None

  def __post_init__(self):
    n = self.image.shape[0]
    for name, arr in [("label", self.label), ("subject", self.subject), *self.extras.items()]:
      if arr.shape[0] != n:
        raise ValueError(f"dataset field {name!r} has {arr.shape[0]} rows, images have {n}")
    if n and (self.label.min() < 0 or self.label.max() >= len(self.class_names)):
      raise ValueError(f"labels must lie in [0, {len(self.class_names)}), got range "
                       f"[{self.label.min()}, {self.label.max()}]")

  def __len__(self) -> int:
    return self.image.shape[0]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def take(self, index: np.ndarray) -> ArrayDataset:
    """The rows at ``index`` (ints or a boolean mask)."""
    return ArrayDataset(self.image[index], self.label[index], self.subject[index],
                        self.class_names, {k: v[index] for k, v in self.extras.items()},
                        self.truth)

  def render_truth(self, index: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The true images of rows ``index`` re-drawn with expressions ``labels``, float32 in [0, 1]."""
    if self.truth is None:
      raise ValueError("this dataset has no ground truth for synthesis")
    return self.truth(self.subject[index], labels, {k: v[index] for k, v in self.extras.items()})


def face_spec(data_cfg) -> procedural.FaceSpec:
  """The FaceSpec named by a ``config.data`` section."""
  return procedural.FaceSpec(
      image_size=data_cfg.image_size, channels=data_cfg.channels,
      num_identities=data_cfg.num_identities, frames=data_cfg.frames,
      include_neutral=data_cfg.include_neutral, seed=data_cfg.data_seed,
      idiosyncrasy=data_cfg.idiosyncrasy, au_noise=data_cfg.au_noise,
      pixel_noise=data_cfg.pixel_noise)


def _builder(data_cfg):
  """The prepared TFDS builder of ``data_cfg.name`` (TFDS is imported only when data is read)."""
  if data_cfg.name == "procedural_faces":
    from jfesgan.data import procedural_tfds  # pylint: disable=g-import-not-at-top
    return procedural_tfds.builder(face_spec(data_cfg), data_dir=data_cfg.data_dir)
  from jfesgan.data import databases  # pylint: disable=g-import-not-at-top
  if data_cfg.name not in databases.BUILDERS:
    raise ValueError(f"data.name={data_cfg.name!r} is not a known dataset; known: "
                     f"{('procedural_faces', *databases.BUILDERS)}")
  return databases.builder(data_cfg)


def _procedural_truth(spec: procedural.FaceSpec, subject: np.ndarray, label: np.ndarray,
                      extras: dict[str, np.ndarray]) -> np.ndarray:
  return procedural.render_truth(spec, subject, label, extras["pose"])


def load_splits(data_cfg) -> dict[str, ArrayDataset]:
  """Every split of the dataset named by ``data_cfg.name``, read through its TFDS builder (with
  the renderer as ground truth for the procedural faces)."""
  b = _builder(data_cfg)
  names = tuple(b.info.features["label"].names)
  truth = (functools.partial(_procedural_truth, face_spec(data_cfg))
           if data_cfg.name == "procedural_faces" else None)
  return {split: read_source(source, names, f"{b.name}/{split}", truth)
          for split, source in b.as_data_source().items()}


def load(data_cfg) -> ArrayDataset:
  """The ``train`` split (for databases without an official split: all of the data)."""
  return load_splits(data_cfg)["train"]


def read_source(source, class_names: tuple[str, ...], what: str = "the dataset",
                truth: Truth | None = None) -> ArrayDataset:
  """All records of a TFDS data source as one ArrayDataset."""
  n = len(source)
  if n == 0:
    raise ValueError(f"{what} has no records")
  records = source.__getitems__(list(range(n)))
  cols = {k: np.stack([r[k] for r in records]) for k in records[0]}
  return ArrayDataset(
      image=cols.pop("image"), label=cols.pop("label").astype(np.int32),
      subject=cols.pop("subject").astype(np.int32), class_names=class_names, extras=cols,
      truth=truth)


def holdout_split(data: ArrayDataset, data_cfg) -> tuple[ArrayDataset, ArrayDataset]:
  """(train, test) with fold ``data_cfg.test_fold`` of ``data_cfg.num_folds`` held out by subject."""
  train, test = splits.fold_masks(data.subject, data.label, data_cfg.test_fold,
                                  data_cfg.num_folds, data_cfg.fold_seed)
  return data.take(train), data.take(test)


def validation_split(train: ArrayDataset, data_cfg) -> tuple[ArrayDataset, ArrayDataset]:
  """(inner train, validation): validation subjects carved out of the training subjects ``train``
  alone, by the same class-stratified subject dealing over ``num_folds - 1`` inner folds (inner
  fold ``test_fold mod (num_folds - 1)`` held out), so the test fold is never seen."""
  inner = max(data_cfg.num_folds - 1, 2)
  keep, val = splits.fold_masks(train.subject, train.label, data_cfg.test_fold % inner, inner,
                                data_cfg.fold_seed + 1)
  return train.take(keep), train.take(val)


PROTOCOLS = ("folds", "official", "cross")
HELDOUT = ("test", "validation")


def train_test(data_cfg) -> tuple[ArrayDataset, ArrayDataset]:
  """The (train, held-out) data of a run under ``data_cfg.protocol``.

  ``folds``: subject-independent k-fold (fold ``test_fold`` held out); ``official``: the
  database's own ``train`` split and its ``data.test_split`` (FER2013, RAF-DB); ``cross``: all of
  this database for training, and ANOTHER database (the data section ``data.test_on``) for
  testing (:func:`cross_database_test`).

  With ``data.heldout="validation"`` the run never sees the test data: under ``folds`` it trains
  on the training subjects less a validation set of them (:func:`validation_split`) and is scored
  on that; under ``official`` it is scored on the database's ``validation`` split.  Every choice
  of recipe, step count or weight is made this way, never on the test fold.
  """
  protocol = data_cfg.get("protocol", "folds")
  heldout = data_cfg.get("heldout", "test")
  if protocol not in PROTOCOLS:
    raise ValueError(f"data.protocol={protocol!r} must be one of {PROTOCOLS}")
  if heldout not in HELDOUT:
    raise ValueError(f"data.heldout={heldout!r} must be one of {HELDOUT}")
  if protocol == "cross":
    if heldout == "validation":
      raise ValueError("data.heldout='validation' and data.protocol='cross': carve validation "
                       "subjects with protocol 'folds' first")
    train = load(data_cfg)
    return train, cross_database_test(data_cfg.test_on, train.class_names,
                                      (data_cfg.image_size, data_cfg.channels))
  if protocol == "folds":
    train, test = holdout_split(load(data_cfg), data_cfg)
    return validation_split(train, data_cfg) if heldout == "validation" else (train, test)
  parts = load_splits(data_cfg)
  split = "validation" if heldout == "validation" else data_cfg.test_split
  if split not in parts or "train" not in parts:
    field = "data.heldout" if heldout == "validation" else "data.test_split"
    raise ValueError(f"{field}: {data_cfg.name} has splits {sorted(parts)}, not {split!r}")
  return parts["train"], parts[split]


def train_test_across_hosts(data_cfg) -> tuple[ArrayDataset, ArrayDataset]:
  """:func:`train_test` in every process of a run; with several processes, process 0 prepares
  the dataset (TFDS writes it once) while the others wait, then they read it."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    return train_test(data_cfg)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    data = train_test(data_cfg)
    multihost_utils.sync_global_devices("jfesgan: dataset prepared")
    return data
  multihost_utils.sync_global_devices("jfesgan: dataset prepared")
  return train_test(data_cfg)


def cross_database_test(other_cfg, class_names: tuple[str, ...],
                        shape: tuple[int, int]) -> ArrayDataset:
  """Another database's test images (its official test split, or all of it) as a test set of
  this run: labels mapped to ``class_names`` by expression name (``angry`` = ``anger``), images
  resized and converted to this run's (size, channels).  Images of a class this run does not
  have are left out, and said so in the log with their counts."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  data = (load_splits(other_cfg)[other_cfg.test_split]
          if other_cfg.get("protocol", "folds") == "official" else load(other_cfg))
  cmap = classes.class_map(class_names, data.class_names)
  left_out = {n: int(np.sum(data.label == k)) for k, n in enumerate(data.class_names)
              if cmap[k] < 0}
  if left_out:
    logging.warning("testing on %s: images of classes this run does not have are left out: %s",
                    other_cfg.name, left_out)
  keep = cmap[data.label] >= 0
  if not keep.any():
    raise ValueError(f"data.test_on ({other_cfg.name}): none of its classes {data.class_names} is "
                     f"one of this run's {class_names}")
  size, channels = shape
  images = []
  for img in data.image[keep]:
    im = Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img)
    im = im.convert("L" if channels == 1 else "RGB")
    if im.size != (size, size):
      im = im.resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(im, np.uint8)
    images.append(arr[..., None] if channels == 1 else arr)
  return ArrayDataset(np.stack(images), cmap[data.label[keep]].astype(np.int32),
                      data.subject[keep], class_names)


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return images.astype(np.float32) / 127.5 - 1.0


class Batches:
  """Deterministic batches: ``at(step)`` is the step-th batch of an endless stream of epochs.

  Each epoch is a fresh permutation seeded by ``(seed, epoch)``; with ``hflip`` each image is
  mirrored with probability 1/2 (a face's expression is symmetric enough for this to be label-
  preserving; the procedural contempt smirk becomes a left smirk, as in real data).
  """

  def __init__(self, data: ArrayDataset, batch_size: int, seed: int, hflip: bool = False,
               subject_index: bool = False):
    if len(data) == 0:
      raise ValueError("cannot draw batches from an empty dataset")
    self.data, self.batch_size, self.seed, self.hflip = data, batch_size, seed, hflip
    # Subject ids as contiguous class indices, for the identity network's classifier.
    self.subjects, self.subject_idx = (np.unique(data.subject, return_inverse=True)
                                       if subject_index else (None, None))
    subject = data.subject if self.subject_idx is None else self.subject_idx
    self._columns = dict(image=data.image, label=data.label.astype(np.int32),
                         subject=subject.astype(np.int32))
    self._perm_cache: dict[int, np.ndarray] = {}

  def _perm(self, epoch: int) -> np.ndarray:
    if epoch not in self._perm_cache:
      if len(self._perm_cache) > 4:
        self._perm_cache.clear()
      self._perm_cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.data))
    return self._perm_cache[epoch]

  def indices(self, step: int) -> np.ndarray:
    """Row indices of the step-th batch."""
    n = len(self.data)
    pos = step * self.batch_size + np.arange(self.batch_size)
    return np.array([self._perm(int(p // n))[p % n] for p in pos])

  def flips(self, step: int) -> np.ndarray:
    """Which images of the step-th batch are mirrored (bool (B,); all False without hflip)."""
    if not self.hflip:
      return np.zeros(self.batch_size, bool)
    return np.random.default_rng([self.seed, 1 << 20, step]).random(self.batch_size) < 0.5

  def arrays(self) -> dict[str, np.ndarray]:
    """The dataset's columns a batch is gathered from: ``image`` uint8, ``label``, ``subject``
    (contiguous indices with ``subject_index``), for keeping the data on the device."""
    return dict(self._columns)

  def at(self, step: int) -> dict[str, np.ndarray]:
    """The step-th batch: ``image`` float32 in [-1, 1], ``label``, ``subject`` int32."""
    idx = self.indices(step)
    img = to_float(self.data.image[idx])
    if self.hflip:
      img = np.where(self.flips(step)[:, None, None, None], img[:, :, ::-1], img)
    return dict(image=img, label=self._columns["label"][idx],
                subject=self._columns["subject"][idx])


# to_float of every uint8 value: a table lookup on the device gives exactly the host's floats
# (XLA would turn the division into a multiplication by the reciprocal, 1 ulp off).
_FLOAT_OF_UINT8 = to_float(np.arange(256, dtype=np.uint8))


def gather_batch(arrays, index, flip):
  """On the device, the batch :meth:`Batches.at` builds on the host: rows ``index`` of
  ``arrays`` (:meth:`Batches.arrays`), as float32 in [-1, 1], mirrored where ``flip``."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  img = jnp.asarray(_FLOAT_OF_UINT8)[arrays["image"][index].astype(jnp.int32)]
  img = jnp.where(flip[:, None, None, None], img[:, :, ::-1], img)
  return dict(image=img, label=arrays["label"][index], subject=arrays["subject"][index])


def check_config(data_cfg, need) -> None:
  """Checks the ``data`` section's fields that need no data for :func:`jfesgan.validate.validate`:
  ``need(ok, field, value, rule)`` records a problem."""
  need(data_cfg.channels in (1, 3), "data.channels", data_cfg.channels, "must be 1 or 3")
  need(data_cfg.get("heldout", "test") in HELDOUT, "data.heldout", data_cfg.get("heldout"),
       f"must be one of {HELDOUT}")
  protocol = data_cfg.get("protocol", "folds")
  need(protocol in PROTOCOLS, "data.protocol", protocol, f"must be one of {PROTOCOLS}")
  if protocol == "folds":
    folds = data_cfg.num_folds
    need(folds >= 2, "data.num_folds", folds, "must be >= 2 (one fold is held out)")
    need(0 <= data_cfg.test_fold < max(folds, 1), "data.test_fold", data_cfg.test_fold,
         f"must be in [0, data.num_folds={folds})")
    if data_cfg.name == "procedural_faces":  # its subjects are known before it is rendered
      need(data_cfg.num_identities >= max(folds, 2), "data.num_identities",
           data_cfg.num_identities, f"must be >= data.num_folds={folds}: every fold holds whole "
           "identities")
