"""The run's writer: metrics as JSON lines and TensorBoard events, and the run's files (JSON, PNG).

Whether this process writes is decided once, here: only process 0 of a multi-host run does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from PIL import Image


def quiet_orbax_logs() -> None:
  """Orbax logs every save and restore at INFO through absl; keep only its warnings."""
  from absl import logging
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno >= logging.converter.STANDARD_WARNING or "orbax" not in r.pathname)


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
  """Device scalars -> Python floats (one transfer for the whole dict)."""
  return {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}


def read_jsonl(path: str) -> list[dict]:
  """The records of a run's ``metrics.jsonl`` (none if the file does not exist).  A line that is
  not a JSON record (cut short by a run killed while writing it) is left out with a warning that
  names the file and line."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    return []
  out = []
  with open(path) as f:
    for i, line in enumerate(f, 1):
      try:
        out.append(json.loads(line))
      except ValueError:
        logging.warning("%s, line %d: not a JSON record (a write cut short?); left out", path, i)
  return out


def _is_after(line: str, stage: str, step: int) -> bool:
  try:
    record = json.loads(line)
  except ValueError:
    return False  # a line cut short by a crash is kept as it is, never silently dropped
  return record.get("stage") == stage and record.get("step", 0) > step


class MetricWriter:
  """Writes scalars to ``<workdir>/metrics.jsonl`` and TensorBoard, images to TensorBoard, and the
  run's JSON and PNG files; on processes other than 0 every call does nothing."""

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self.tb_dir = os.path.join(workdir, "tensorboard")
    self._tb = None
    if self.active:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter  # Writes event files without TensorFlow.
      self._tb = SummaryWriter(self.tb_dir)

  def scalars(self, step: int, metrics: Mapping[str, float], stage: str) -> None:
    """Appends one JSON line ``{"stage", "step", **metrics}`` and the TensorBoard scalars."""
    if not self.active:
      return
    with open(self.jsonl_path, "a") as f:
      f.write(json.dumps({"stage": stage, "step": int(step), **metrics}) + "\n")
    for k, v in metrics.items():
      self._tb.add_scalar(k, v, step)

  def drop_after(self, stage: str, step: int) -> int:
    """Removes from ``metrics.jsonl`` the records of ``stage`` past ``step`` (a resumed stage runs
    those steps again and logs them anew: one record per step, never two); returns how many.
    TensorBoard's event files are append-only: its viewer shows the newest value of a step."""
    if not self.active or not os.path.isfile(self.jsonl_path):
      return 0
    with open(self.jsonl_path) as f:
      lines = f.readlines()
    keep = [ln for ln in lines if not _is_after(ln, stage, step)]
    if len(keep) != len(lines):
      tmp = self.jsonl_path + ".tmp"
      with open(tmp, "w") as f:
        f.writelines(keep)
      os.replace(tmp, self.jsonl_path)
    return len(lines) - len(keep)

  def image(self, step: int, tag: str, image: np.ndarray) -> None:
    """An (H, W, C) uint8 image."""
    if self.active:
      self._tb.add_image(tag, image, step, dataformats="HWC")

  def json(self, obj: Any, path: str) -> str:
    """Writes ``obj`` as indented JSON to ``path``; returns the path."""
    if self.active:
      with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    return path

  def png(self, image: np.ndarray, path: str) -> str:
    """Writes an (H, W, C) uint8 image to ``path``; returns the path."""
    if self.active:
      Image.fromarray(image).save(path)
    return path

  def flush(self) -> None:
    if self.active:
      self._tb.flush()

  def close(self) -> None:
    if self.active:
      self._tb.close()
