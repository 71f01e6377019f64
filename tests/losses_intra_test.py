"""intra_class_loss (rdbp / plain / none) against independent oracles, under jit and without."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jfesgan import losses

K = 5


def oracle_rdbp(f_real, y_real, f_syn, y_syn, memory):
  """Written independently: per-class masks, python loops, centres behind stop_gradient."""
  centres, valid = [], []
  for k in range(K):
    mask = (y_real == k).astype(f_real.dtype)[:, None]
    n = jnp.sum(mask)
    mean = jnp.sum(mask * f_real, 0) / jnp.maximum(n, 1)
    if memory is not None:
      mean = jnp.where(n > 0, mean, memory[k])
    centres.append(mean)
    valid.append(jnp.logical_or(n > 0, memory is not None))
  c = jax.lax.stop_gradient(jnp.stack(centres))
  w = jnp.stack(valid).astype(f_syn.dtype)[y_syn]
  real = jnp.sum(jnp.stack([jnp.sum((f_real[i] - c[y_real[i]])**2) for i in range(f_real.shape[0])]))
  syn = jnp.sum(jnp.stack([w[j] * jnp.sum((f_syn[j] - c[y_syn[j]])**2) for j in range(f_syn.shape[0])]))
  return 0.5 * real / f_real.shape[0] + 0.5 * syn / f_syn.shape[0]


def oracle_plain(f_real, y_real, f_syn, y_syn):
  """Centres over real and synthetic features, plain autodiff everywhere."""
  f_all = jnp.concatenate([f_real, f_syn])
  y_all = jnp.concatenate([y_real, y_syn])
  c = jnp.stack([jnp.sum(jnp.where((y_all == k)[:, None], f_all, 0), 0)
                 / jnp.maximum(jnp.sum(y_all == k), 1) for k in range(K)])
  real = jnp.mean(jnp.sum((f_real - c[y_real])**2, -1))
  syn = jnp.mean(jnp.sum((f_syn - c[y_syn])**2, -1))
  return 0.5 * (real + syn)


def make_inputs(seed, n_real, n_syn, d, missing):
  """Random features; real labels avoid the classes in ``missing`` (synthetic ones do not)."""
  rng = np.random.default_rng(seed)
  present = [k for k in range(K) if k not in missing]
  y_real = rng.choice(present, n_real)
  y_syn = np.concatenate([np.arange(K), rng.integers(0, K, n_syn - K)])
  f_real = rng.normal(size=(n_real, d)).astype(np.float32)
  f_syn = rng.normal(size=(n_syn, d)).astype(np.float32) + 0.5
  memory = rng.normal(size=(K, d)).astype(np.float32)
  return (jnp.asarray(f_real), jnp.asarray(y_real, jnp.int32), jnp.asarray(f_syn),
          jnp.asarray(y_syn, jnp.int32), jnp.asarray(memory))


CASES = [(0, 9, 7, 3, ()), (1, 12, 10, 4, (2,)), (2, 6, 8, 2, (0, 4)), (3, 20, 5, 6, ())]


@pytest.mark.slow
class IntraClassTest(chex.TestCase):
  """The custom_vjp against its oracle, with and without jit (each variant compiles anew)."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_rdbp_matches_oracle(self):
    for seed, n_r, n_s, d, missing in CASES:
      f_r, y_r, f_s, y_s, mem = make_inputs(seed, n_r, n_s, d, missing)
      for memory in (None, mem):
        fn = self.variant(lambda a, b, m=memory: losses.intra_class_loss(
            a, y_r, b, y_s, num_classes=K, mode="rdbp", memory=m))
        val, grads = jax.value_and_grad(fn, argnums=(0, 1))(f_r, f_s)
        ref, ref_grads = jax.value_and_grad(
            lambda a, b: oracle_rdbp(a, y_r, b, y_s, memory), argnums=(0, 1))(f_r, f_s)
        chex.assert_trees_all_close(val, ref, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(grads, ref_grads, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_plain_matches_oracle(self):
    for seed, n_r, n_s, d, missing in CASES:
      f_r, y_r, f_s, y_s, _ = make_inputs(seed, n_r, n_s, d, missing)
      fn = self.variant(lambda a, b: losses.intra_class_loss(a, y_r, b, y_s, num_classes=K,
                                                             mode="plain"))
      val, grads = jax.value_and_grad(fn, argnums=(0, 1))(f_r, f_s)
      ref, ref_grads = jax.value_and_grad(lambda a, b: oracle_plain(a, y_r, b, y_s),
                                          argnums=(0, 1))(f_r, f_s)
      chex.assert_trees_all_close(val, ref, rtol=1e-5, atol=1e-6)
      chex.assert_trees_all_close(grads, ref_grads, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_none_is_zero(self):
    f_r, y_r, f_s, y_s, _ = make_inputs(0, 8, 7, 3, ())
    fn = self.variant(lambda a, b: losses.intra_class_loss(a, y_r, b, y_s, num_classes=K, mode="none"))
    val, grads = jax.value_and_grad(fn, argnums=(0, 1))(f_r, f_s)
    assert float(val) == 0.0
    chex.assert_trees_all_equal(grads, (jnp.zeros_like(f_r), jnp.zeros_like(f_s)))


def test_rdbp_synthetic_term_never_reaches_real_features():
  """Under rdbp the real gradient is (f_r - m)/N_r whatever the synthetic batch is; under plain
  the synthetic features do pull the real ones."""
  f_r, y_r, f_s, y_s, _ = make_inputs(4, 10, 9, 3, ())
  grad_real = lambda mode, fs: jax.grad(lambda a: losses.intra_class_loss(
      a, y_r, fs, y_s, num_classes=K, mode=mode))(f_r)
  m = jnp.stack([jnp.mean(f_r[y_r == k], 0) for k in range(K)])
  chex.assert_trees_all_close(grad_real("rdbp", f_s), (f_r - m[y_r]) / f_r.shape[0], atol=1e-6)
  chex.assert_trees_all_close(grad_real("rdbp", f_s), grad_real("rdbp", f_s * 10 + 3), atol=1e-6)
  assert not np.allclose(grad_real("plain", f_s), grad_real("plain", f_s * 10 + 3))


def test_rdbp_gives_memory_no_gradient_and_uses_it_only_for_missing_classes():
  f_r, y_r, f_s, y_s, mem = make_inputs(5, 10, 8, 3, (1,))
  g = jax.grad(lambda mm: losses.intra_class_loss(f_r, y_r, f_s, y_s, num_classes=K, memory=mm))(mem)
  chex.assert_trees_all_equal(g, jnp.zeros_like(mem))
  # Changing the memory of a class that has real samples changes nothing.
  a = losses.intra_class_loss(f_r, y_r, f_s, y_s, num_classes=K, memory=mem)
  b = losses.intra_class_loss(f_r, y_r, f_s, y_s, num_classes=K, memory=mem.at[0].add(5.0))
  c = losses.intra_class_loss(f_r, y_r, f_s, y_s, num_classes=K, memory=mem.at[1].add(5.0))
  chex.assert_trees_all_close(a, b)
  assert float(c) > float(a)
  # Without memory, the synthetic samples of the missing class contribute zero.
  no_mem = losses.intra_class_loss(f_r, y_r, f_s, y_s, num_classes=K)
  only_present = losses.intra_class_loss(f_r, y_r, f_s[y_s != 1], y_s[y_s != 1], num_classes=K)
  n_s, n_kept = f_s.shape[0], int(jnp.sum(y_s != 1))
  real_part = losses.intra_class_loss(f_r, y_r, f_s[:0], y_s[:0], num_classes=K)
  chex.assert_trees_all_close((no_mem - real_part) * n_s, (only_present - real_part) * n_kept,
                              rtol=1e-5)


def test_update_centre_memory_uses_real_features_of_present_classes():
  f_r, y_r, _, _, mem = make_inputs(6, 12, 6, 3, (3,))
  new = losses.update_centre_memory(mem, f_r, y_r, decay=0.9)
  chex.assert_trees_all_close(new[3], mem[3])
  k = int(y_r[0])
  chex.assert_trees_all_close(new[k], 0.9 * mem[k] + 0.1 * jnp.mean(f_r[y_r == k], 0), rtol=1e-5)


def test_unknown_mode_is_named():
  f_r, y_r, f_s, y_s, _ = make_inputs(0, 8, 7, 3, ())
  with pytest.raises(ValueError, match="intra-class mode"):
    losses.intra_class_loss(f_r, y_r, f_s, y_s, num_classes=K, mode="center")


def test_centres_are_over_the_global_batch_when_sharded():
  """Sharded over 4 devices, value and gradients equal the single-device ones."""
  from jfesgan import parallel
  f_r, y_r, f_s, y_s, mem = make_inputs(7, 12, 8, 3, (2,))
  fn = lambda a, b, ya, yb: jax.value_and_grad(lambda a, b: losses.intra_class_loss(
      a, ya, b, yb, num_classes=K, memory=mem), argnums=(0, 1))(a, b)
  ref = fn(f_r, f_s, y_r, y_s)
  mesh = parallel.make_mesh(4)
  sharded = parallel.shard_batch({"a": np.asarray(f_r), "ya": np.asarray(y_r)}, mesh)
  sharded_s = parallel.shard_batch({"b": np.asarray(f_s), "yb": np.asarray(y_s)}, mesh)
  out = jax.jit(fn)(sharded["a"], sharded_s["b"], sharded["ya"], sharded_s["yb"])
  chex.assert_trees_all_close(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rdbp", "plain"])
def test_normalised_intra_class_matches_oracle(mode):
  """joint.intra_normalise: the loss on unit features, value and gradients w.r.t. the RAW
  features, against the oracles applied to features normalised by hand (numpy norms)."""
  for seed, n_r, n_s, d, missing in CASES:
    f_r, y_r, f_s, y_s, mem = make_inputs(seed, n_r, n_s, d, missing)
    mem = mem / jnp.linalg.norm(mem, axis=-1, keepdims=True)
    by_hand = lambda f: f / jnp.linalg.norm(f, axis=-1, keepdims=True)
    fn = jax.jit(lambda a, b: losses.intra_class_loss(
        losses.unit(a), y_r, losses.unit(b), y_s, num_classes=K, mode=mode,
        memory=mem if mode == "rdbp" else None))
    if mode == "rdbp":
      ref_fn = lambda a, b: oracle_rdbp(by_hand(a), y_r, by_hand(b), y_s, mem)
    else:
      ref_fn = lambda a, b: oracle_plain(by_hand(a), y_r, by_hand(b), y_s)
    val, grads = jax.value_and_grad(fn, argnums=(0, 1))(f_r, f_s)
    ref, ref_grads = jax.value_and_grad(ref_fn, argnums=(0, 1))(f_r, f_s)
    chex.assert_trees_all_close(val, ref, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(grads, ref_grads, rtol=1e-4, atol=1e-6)
    # On unit features the loss is scale-free: scaling the raw features changes nothing.
    np.testing.assert_allclose(fn(3.0 * f_r, 0.5 * f_s), val, rtol=1e-5)
    # ... whereas the unnormalised loss grows with the scale.
    raw = lambda a, b: losses.intra_class_loss(a, y_r, b, y_s, num_classes=K, mode=mode,
                                               memory=mem if mode == "rdbp" else None)
    assert raw(3.0 * f_r, 3.0 * f_s) > 5.0 * raw(f_r, f_s)
