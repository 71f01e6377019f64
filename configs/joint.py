"""The full method on the embedded default: stage 0 (Phi), stage 1 (FESGAN), stage 2 (joint).

The real-only baseline recogniser trains for as many steps as the joint stage (a field
reference, so ``--config.stage2.steps=N`` moves both).
"""

import ml_collections

from configs import default


def get_config():
  """Returns the joint-learning configuration (the main job's default)."""
  c = default.get_config()
  c.stages = ("phi", "fesgan", "joint")
  steps = ml_collections.FieldReference(c.stage2.steps)
  c.stage2.steps = steps
  c.eval.r.steps = steps
  return c
