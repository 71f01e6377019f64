"""Preparing a TFDS dataset once when several processes ask for it at the same moment.

Two runs started side by side on a fresh machine (two seeds, two folds) both find the dataset
missing and both generate it; TFDS writes each copy into a temporary folder and renames it into
place, so the second to finish failed (``FileExistsError: Cannot rename ...incomplete...``).
:func:`prepared` lets them take turns under a lock file beside the dataset: the first generates
it, the others wait and then read it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

try:
  import fcntl
except ImportError:  # not POSIX: no lock (one process at a time, as before)
  fcntl = None

Builder = TypeVar("Builder")


def prepared(make: Callable[[], Builder], **kwargs) -> Builder:
  """The builder ``make()`` returns, its dataset prepared (``download_and_prepare(**kwargs)``),
  one process at a time per dataset and config.  A process that waited builds its builder
  anew, so that it reads the dataset's information as the first process wrote it.  Datasets in
  a bucket (``gs://...``) are prepared without a lock."""
  b = make()
  path = os.fspath(b.data_dir)
  if fcntl is None or "://" in path or os.path.isdir(path):
    b.download_and_prepare(**kwargs)  # already there (TFDS reuses it), or no lock to take
    return b
  lock_dir = os.path.dirname(path)  # <data_dir>/<dataset>/<config>, above the version's folder
  os.makedirs(lock_dir, exist_ok=True)
  with open(os.path.join(lock_dir, ".prepare.lock"), "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      b = make()
      b.download_and_prepare(**kwargs)
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return b
