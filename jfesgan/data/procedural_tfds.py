"""TFDS builder of the procedural-faces dataset: generated on first use, no download, no TensorFlow.

Images are stored as ``Tensor(uint8)`` features (TFDS's ``Image`` feature needs TensorFlow to
encode) in ``array_record`` files and read back with ``as_data_source()``.  Each builder config is
one :class:`~jfesgan.data.procedural.FaceSpec`; its name encodes every field, so a changed spec
is a new dataset rather than a stale cache.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from jfesgan.data import prepare, procedural


class ProceduralFacesConfig(tfds.core.BuilderConfig):
  """Builder config wrapping a FaceSpec."""

  def __init__(self, spec: procedural.FaceSpec):
    super().__init__(name=spec.name, description=f"Procedural faces {dataclasses.asdict(spec)}")
    self.spec = spec


class ProceduralFaces(tfds.core.GeneratorBasedBuilder):
  """Frontal faces of many identities, each with every CK+ expression in a few frames.

  One split, ``train``, holds every identity: subject-independent folds are made from the
  ``subject`` feature (see :mod:`jfesgan.data.splits`), as for CK+, which has no official split.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [ProceduralFacesConfig(procedural.FaceSpec())]

  def _info(self) -> tfds.core.DatasetInfo:
    spec = self.builder_config.spec
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(
                shape=(spec.image_size, spec.image_size, spec.channels), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=list(spec.class_names)),
            "subject": tfds.features.Scalar(dtype=np.int32),
            "frame": tfds.features.Scalar(dtype=np.int32),
            "pose": tfds.features.Tensor(shape=(len(procedural.POSE_FIELDS),), dtype=np.float32),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data is drawn here.
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    data = procedural.generate(self.builder_config.spec)
    for i in range(data["label"].shape[0]):
      yield i, {k: v[i] for k, v in data.items()}


def builder(spec: procedural.FaceSpec, data_dir: str | None = None) -> ProceduralFaces:
  """The builder for ``spec``, prepared (generated and written) on first use."""
  # TFDS refuses a custom config named like a registered one: pass registered ones by name.
  registered = {c.name for c in ProceduralFaces.BUILDER_CONFIGS}
  config = spec.name if spec.name in registered else ProceduralFacesConfig(spec)
  return prepare.prepared(lambda: ProceduralFaces(config=config, data_dir=data_dir or None),
                         file_format="array_record")
