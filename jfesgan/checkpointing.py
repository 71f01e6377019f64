"""Orbax checkpoints of each stage's states, one manager per stage under ``<workdir>/checkpoints``.

Resume order: a stage whose final step is saved is restored and skipped; a stage with a partial
checkpoint is restored at its latest step and continues, batches included (they are a pure
function of the step).  The restore target is an abstract (``jax.eval_shape``) tree with the
mesh's replicated sharding, so nothing is initialised twice.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp


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
                                             enable_async_checkpointing=False))

  def latest_step(self) -> int | None:
    """The newest saved step, or None."""
    return self.manager.latest_step()

  def save(self, step: int, state: Any) -> None:
    """Saves ``state`` at ``step`` (blocking until it is on disk)."""
    self.manager.save(step, args=ocp.args.StandardSave(state))
    self.manager.wait_until_finished()

  def restore_or_create(self, create: Callable[[], Any], sharding: jax.sharding.Sharding) -> Any:
    """Restores the latest checkpoint into the structure ``create()`` would return, or creates it.

    ``create`` runs for real only when there is no checkpoint; otherwise it is traced abstractly.
    """
    step = self.latest_step()
    if step is None:
      return jax.device_put(create(), sharding)
    abstract = jax.eval_shape(create)
    abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                            abstract)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self.manager.close()
