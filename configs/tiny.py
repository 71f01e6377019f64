"""A tiny configuration for tests: 32 px, few identities, narrow networks, a handful of steps."""

from configs import default


def get_config():
  """Returns the tiny test configuration."""
  c = default.get_config()
  c.batch_size = 8
  c.data.image_size = 32
  c.data.num_identities = 8
  c.data.frames = 1
  c.data.num_folds = 4
  c.model.width = 8
  c.model.max_width = 16
  c.model.latent_dim = 8
  c.model.embed_dim = 16
  c.model.dz_hidden = (32,)
  c.phi.steps = 2
  c.fesgan.steps = 2
  c.fesgan.warmup.steps = 0  # the tests that want a warm-up set it
  c.real.steps = 2
  c.joint.steps = 2
  c.stages = ("phi", "fesgan", "real", "joint")
  c.eval.num_prior_samples = 16
  c.eval.grid_rows = 2
  c.eval.batch_size = 16
  c.log_every = 1
  c.checkpoint_every = 1
  c.sample_every = 2
  return c
