"""The full method on the embedded default: stages 0 (Phi), 1 (FESGAN) and the joint stage."""

from configs import default


def get_config():
  """Returns the joint-learning configuration (the main job's default)."""
  c = default.get_config()
  return c
