"""Orbax checkpoints of each stage's states, one manager per stage under ``<workdir>/checkpoints``.

Resume order: a stage whose final step is saved is restored and skipped; a stage with a partial
checkpoint is restored at its latest step and continues, batches included (they are a pure
function of the step).  The restore target is an abstract (``jax.eval_shape``) tree with the
mesh's replicated sharding, so nothing is initialised twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from jfesgan.run import faults


def _one_line(e: Exception) -> str:
  """An exception as one short line: its type and the first line of its message."""
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def latest_step(workdir: str, stage: str) -> int | None:
  """The newest saved step of ``stage`` in ``workdir``, or None; creates nothing."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints", stage)
  if not os.path.isdir(directory):
    return None
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False))
  try:
    return manager.latest_step()
  finally:
    manager.close()


class StageCheckpointer:
  """Saves and restores one stage's state pytree under ``<workdir>/checkpoints/<stage>``."""

  def __init__(self, workdir: str, stage: str, *, max_to_keep: int = 2):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints", stage)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=False),
        item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self) -> int | None:
    """The newest saved step, or None."""
    return self.manager.latest_step()

  def save(self, step: int, state: Any, config: dict | None = None) -> None:
    """Saves ``state`` at ``step`` (blocking until it is on disk), and ``config`` (the run's
    config as a dict) as ``config.json`` beside the steps."""
    try:
      with faults.background_failures_quiet():
        self.manager.save(step, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()
    except BaseException:
      # A failed save (a full disk) leaves the manager's I/O threads failing one after another:
      # stop them now, so that the error that ends the run is the last thing it says.
      try:
        self.manager.close()
      except Exception:  # pylint: disable=broad-except  # the save's own error is the one to raise
        pass
      raise
    if config is not None and jax.process_index() == 0:
      tmp = os.path.join(self.directory, "config.json.tmp")
      with open(tmp, "w") as f:
        json.dump(config, f, indent=1, sort_keys=True)
      os.replace(tmp, os.path.join(self.directory, "config.json"))

  def restore_or_create(self, create: Callable[[], Any], sharding: jax.sharding.Sharding, *,
                        require: bool = False) -> Any:
    """Restores the newest readable checkpoint into the structure ``create()`` would return, or
    creates it when there is none.

    ``create`` runs for real only when there is no checkpoint; otherwise it is traced abstractly.
    A step that cannot be restored (a truncated or missing file, an empty or partial folder) is
    reported in one line with its path and reason, moved aside to ``<step>.corrupt`` (kept, not
    deleted, and out of the way of the next save) and the previous step is tried; when no step can
    be restored the error names the folder.  With ``require`` a missing checkpoint is an error too.
    """
    steps = sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      if require:  # a stage taken from elsewhere or a tool's input: never fresh random weights
        raise FileNotFoundError(f"no checkpoint in {self.directory}")
      return jax.device_put(create(), sharding)
    abstract = jax.eval_shape(create)
    abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                            abstract)
    reasons = []
    for step in steps:
      try:
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # pylint: disable=broad-except  # any unreadable step falls back
        reason = _one_line(e)
        reasons.append(f"{step}: {reason}")
        path = os.path.join(self.directory, str(step))
        logging.warning("checkpoint %s cannot be restored (%s); trying the previous step", path,
                        reason)
        self._set_aside(step)
    raise RuntimeError(f"no checkpoint in {self.directory} can be restored ({'; '.join(reasons)}); "
                       "move the folder away to start this stage afresh")

  def restore_raw(self, step: int) -> Any:
    """The state saved at ``step`` as a plain tree of arrays on this process's first device (no
    target structure needed, and whatever device topology saved it); raises naming the step's
    folder when it cannot be read."""
    try:
      device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
      abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                              self.manager.item_metadata(step))
      return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except
      raise RuntimeError(f"checkpoint {os.path.join(self.directory, str(step))} cannot be "
                         f"restored ({_one_line(e)})") from e

  def _set_aside(self, step: int) -> None:
    path = os.path.join(self.directory, str(step))
    if os.path.exists(path):
      target = path + ".corrupt"
      n = 1
      while os.path.exists(target):
        target, n = f"{path}.corrupt{n}", n + 1
      os.rename(path, target)
    self.manager.reload()

  def close(self) -> None:
    self.manager.close()
