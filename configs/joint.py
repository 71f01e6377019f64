"""The full method on the embedded default: every stage of the plan (phi, fesgan, real, joint).

The real-only baseline recogniser trains for as many steps as the joint stage (a field
reference, so ``--config.joint.steps=N`` moves both).
"""

import ml_collections

from configs import default


def get_config():
  """Returns the joint-learning configuration (the main job's default)."""
  c = default.get_config()
  c.stages = ("phi", "fesgan", "real", "joint")
  steps = ml_collections.FieldReference(c.joint.steps)
  c.joint.steps = steps
  c.real.steps = steps
  return c
