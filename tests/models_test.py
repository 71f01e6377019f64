"""Every network gives the documented shapes and ranges at 32, 48, 64 and 128 px."""

import chex
import jax
import jax.numpy as jnp
import pytest

from jfesgan import models as M


@pytest.mark.parametrize("size,channels,num_down", [(32, 1, 3), (48, 1, 3), (64, 3, 3), (128, 3, 4)])
def test_shapes_and_ranges(size, channels, num_down):
  key = jax.random.key(size)
  n, k, d = 2, 7, 16
  common = dict(width=4, max_width=16, num_down=num_down)
  x = jax.random.uniform(key, (n, size, size, channels), minval=-1, maxval=1)
  c = jax.nn.one_hot(jnp.array([0, 6]), k)

  g = M.Generator(image_size=size, channels=channels, latent_dim=d, **common)
  gp = g.init(key, x, c)["params"]
  assert set(gp) == {"encoder", "decoder"}
  z = g.apply({"params": gp}, x, method="encode")
  chex.assert_shape(z, (n, d))
  assert float(jnp.max(jnp.abs(z))) < 1.0
  out = g.apply({"params": gp}, x, c)
  chex.assert_shape(out, (n, size, size, channels))
  assert float(jnp.max(jnp.abs(out))) <= 1.0
  # A continuous expression code (interpolation) is accepted too.
  chex.assert_shape(g.apply({"params": gp}, z, 0.5 * c + 0.5 * c[::-1], method="decode"),
                    (n, size, size, channels))

  dimg = M.ImageDiscriminator(num_classes=k, **common)
  score, logits = dimg.apply(dimg.init(key, x), x)
  chex.assert_shape([score, logits], [(n,), (n, k)])

  dz = M.LatentDiscriminator(hidden=(8,))
  chex.assert_shape(dz.apply(dz.init(key, z), z), (n,))

  phi = M.IdentityNet(num_subjects=5, embed_dim=8, **common)
  e, subj_logits = phi.apply(phi.init(key, x), x)
  chex.assert_shape([e, subj_logits], [(n, 8), (n, 5)])
  chex.assert_trees_all_close(jnp.linalg.norm(e, axis=-1), jnp.ones(n), atol=1e-4)

  r = M.Recognizer(num_classes=k, embed_dim=8, **common)
  f, r_logits = r.apply(r.init(key, x), x)
  chex.assert_shape([f, r_logits], [(n, 8), (n, k)])
  chex.assert_tree_all_finite([out, score, logits, e, f, r_logits])


def test_recognizer_trunk_matches_phi_trunk():
  """R can start from Phi's trunk: the two trunks have the same parameter structure."""
  x = jnp.zeros((1, 32, 32, 1))
  phi = M.IdentityNet(num_subjects=3, embed_dim=8, width=4, max_width=8, num_down=2)
  r = M.Recognizer(num_classes=7, embed_dim=8, width=4, max_width=8, num_down=2)
  pt = phi.init(jax.random.key(0), x)["params"]["trunk"]
  rt = r.init(jax.random.key(0), x)["params"]["trunk"]
  chex.assert_trees_all_equal_shapes(pt, rt)


def test_bad_resolution_is_named():
  g = M.Generator(image_size=36, channels=1, latent_dim=4, width=4, max_width=8, num_down=3)
  with pytest.raises(ValueError, match="image_size=36"):
    g.init(jax.random.key(0), jnp.zeros((1, 36, 36, 1)), jnp.zeros((1, 7)))


def test_build_models_from_config(tiny_config):
  ms = M.build_models(tiny_config, num_classes=7, num_subjects=6)
  assert ms.phi.num_subjects == 6 and ms.dimg.num_classes == 7
  assert ms.latent_dim == tiny_config.model.latent_dim
