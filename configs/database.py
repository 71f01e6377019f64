"""Shared settings of the real-database configs: the full method (stages 0-2) on a database.

Each database config calls :func:`get_config` with its own data fields.  Faces are cropped once
when the TFDS builder is prepared (see ``jfesgan/data/databases/``); the manual folder is
``--config.data.manual_dir`` (default ``<data_dir>/downloads/manual``).
"""

import ml_collections

from configs import joint


def get_config(name: str, subjects: bool = True, **data) -> ml_collections.ConfigDict:
  """The joint configuration on database ``name`` with ``data`` overrides.

  ``subjects=False`` is for databases without subject ids (FER2013, RAF-DB): no identity network
  (stage 0) and no identity term; a translation keeps identity through the reconstruction and
  latent terms.
  """
  c = joint.get_config()
  d = c.data
  d.name = name
  # The folder the user downloaded the database to ('' = TFDS's <data_dir>/downloads/manual).
  d.manual_dir = ""
  # Face crop: side in pixels, channels, detector ('haar': OpenCV's cascade, which ships in the
  # opencv wheel; 'none': the images are faces already) and margin around the face box.
  d.image_size = 48
  d.channels = 1
  d.detector = "haar"
  d.margin = 0.1
  # Rotate and scale each face so that its eyes sit level at fixed places (OpenCV's eye cascade,
  # also inside the wheel); faces whose eyes are not both found are cut unaligned and listed in
  # the dataset's metadata.json ("unaligned").  Off: not yet measured on validation subjects.
  d.align = False
  # Frames per labelled sequence (the last ones: the apex) and the neutral class.
  d.frames = 3
  d.include_neutral = False
  # Bad input (unreadable image, unparsable label, unknown class folder, empty sequence, no face
  # found) is an error naming the file; True leaves such items out and lists them in the
  # dataset's metadata.json.
  d.skip_bad_input = False
  # With data.protocol='official': the split to test on (FER2013, RAF-DB).
  d.test_split = "test"
  for k, v in data.items():
    d[k] = v
  # The default's warm-up of stage 1 (fesgan.warmup) was chosen on the embedded faces and is not
  # measured on a real database: off until it is.
  c.fesgan.warmup.steps = 0
  # Likewise the default's blurred upsampling and its reconstruction weight (chosen together on
  # the embedded faces): the transposed convolutions and rec_weight 10 here until measured.
  c.model.g_upsample = "transpose"
  c.fesgan.rec_weight = 10.0
  # And the default's expression weight with its moving average (chosen together on the embedded
  # faces): the expression term at 2 and g_ema = g here until measured.
  c.fesgan.expr_weight = 2.0
  c.fesgan.ema_decay = 0.0
  # Fields of the procedural renderer are not used by a real database.
  for k in ("num_identities", "data_seed", "idiosyncrasy", "au_noise", "pixel_noise"):
    del d[k]
  if not subjects:
    c.phi.steps = 0
    c.fesgan.identity_weight = 0.0
  return c
