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

One module per database (``ckplus``, ``oulu_casia``, ``mmi``, ``jaffe``, ``fer2013``, ``rafdb``,
``expression_folder``), each declaring its layout, classes and options; the shared machinery is
in :mod:`base`.

Bad input (an unreadable image, a label file that does not parse, an unknown class folder, a
sequence without frames, a face that cannot be found) raises :class:`faces.BadInputError` naming
the file, unless the builder config's ``skip_bad_input`` is set: then the item is left out and
listed, with its reason, in the dataset's ``metadata.json`` (``skipped``) and in the log.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds
from absl import logging

from jfesgan.data import faces, prepare
from jfesgan.data.databases.base import DatabaseConfig, ExpressionDatabase, source_fingerprint
from jfesgan.data.databases.ckplus import Ckplus
from jfesgan.data.databases.expression_folder import ExpressionFolder
from jfesgan.data.databases.fer2013 import Fer2013
from jfesgan.data.databases.jaffe import Jaffe
from jfesgan.data.databases.mmi import Mmi
from jfesgan.data.databases.oulu_casia import OuluCasia
from jfesgan.data.databases.rafdb import Rafdb

BUILDERS: dict[str, type[ExpressionDatabase]] = {
    "ckplus": Ckplus, "oulu_casia": OuluCasia, "mmi": Mmi, "jaffe": Jaffe, "fer2013": Fer2013,
    "rafdb": Rafdb, "expression_folder": ExpressionFolder}


def config_from(data_cfg) -> DatabaseConfig:
  """The builder config described by a ``config.data`` section of a real database."""
  crop = faces.CropSpec(data_cfg.image_size, data_cfg.channels, data_cfg.detector,
                        data_cfg.margin, bool(data_cfg.get("align", False)))
  return DatabaseConfig(crop=crop, frames=data_cfg.frames, include_neutral=data_cfg.include_neutral,
                        skip_bad_input=data_cfg.skip_bad_input,
                        options=BUILDERS[data_cfg.name].options_from(data_cfg))
def builder(data_cfg) -> ExpressionDatabase:
  """The prepared builder of the database named by ``data_cfg.name`` (prepared on first use)."""
  cls = BUILDERS[data_cfg.name]
  config = config_from(data_cfg)
  data_dir = data_cfg.data_dir or None
  manual = os.path.expanduser(data_cfg.manual_dir) if data_cfg.manual_dir else os.path.join(
      os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", tfds.core.constants.DATA_DIR)),
      "downloads", "manual")
  if not os.path.isdir(manual):
    raise faces.BadInputError(manual, f"missing folder: the manual folder of {cls.name} (set "
                              f"--config.data.manual_dir); it must hold:\n"
                              f"{cls.MANUAL_DOWNLOAD_INSTRUCTIONS}")
  # Keyed by the source tree's contents: a changed tree is prepared anew, never read stale.
  config = DatabaseConfig(crop=config.crop, frames=config.frames,
                          include_neutral=config.include_neutral,
                          skip_bad_input=config.skip_bad_input,
                          options=dict(config.options, source=source_fingerprint(manual)))
  registered = {c.name: c for c in cls.BUILDER_CONFIGS}
  # Pass a registered config by name (TFDS refuses a custom config named like a registered one).
  for name, c in registered.items():
    if (c.crop, c.frames, c.include_neutral, c.skip_bad_input, c.options) == (
        config.crop, config.frames, config.include_neutral, config.skip_bad_input, config.options):
      config = name
      break
  b = prepare.prepared(lambda: cls(config=config, data_dir=data_dir), file_format="array_record",
                       download_config=tfds.download.DownloadConfig(manual_dir=manual))
  skipped = b.info.metadata.get("skipped", [])
  if skipped:
    logging.warning("%s/%s: %d bad input item(s) were skipped when it was prepared "
                    "(skip_bad_input); they are listed in %s", cls.name, b.builder_config.name,
                    len(skipped), os.path.join(b.data_dir, "metadata.json"))
  return b
