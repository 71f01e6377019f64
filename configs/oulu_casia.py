"""Oulu-CASIA: VIS, strong light (``--config.data.light``/``modality`` for the others), 6 classes,
the last 3 frames of each of the 480 sequences (80 subjects), 48 px gray, 10 folds by subject."""

from configs import database


def get_config():
  return database.get_config("oulu_casia", modality="vis", light="strong", frames=3)
