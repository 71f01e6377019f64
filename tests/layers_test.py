"""The convolution implementations compute the same function, and it is the documented one."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jfesgan.models import layers


def reference_conv_transpose(x, w):
  """Direct definition: out[2i - 1 + ky, 2j - 1 + kx] += x[i, j] @ w[ky, kx] (numpy loops)."""
  n, h, wd, c = x.shape
  f = w.shape[-1]
  out = np.zeros((n, 2 * h + 2, 2 * wd + 2, f))  # one extra row/column each side, cropped below
  for i in range(h):
    for j in range(wd):
      for ky in range(4):
        for kx in range(4):
          out[:, 2 * i + ky, 2 * j + kx] += x[:, i, j] @ w[ky, kx]
  return out[:, 1:-1, 1:-1]


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["phase", "matmul"])
@pytest.mark.parametrize("stride,k,size,c,f", [(1, 3, 8, 3, 5), (1, 1, 6, 4, 2), (1, 5, 7, 2, 3),
                                               (2, 4, 8, 3, 4), (2, 2, 6, 2, 3), (2, 4, 2, 5, 2)])
def test_conv2d_matches_xla(impl, stride, k, size, c, f):
  kx, kw = jax.random.split(jax.random.key(stride * 100 + k * 10 + size))
  x = jax.random.normal(kx, (2, size, size, c))
  w = jax.random.normal(kw, (k, k, c, f))
  ref = layers.conv2d(x, w, stride, "xla")
  out = layers.conv2d(x, w, stride, impl)
  chex.assert_shape(out, (2, size // stride, size // stride, f))
  chex.assert_trees_all_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("impl", ["xla", "phase", "matmul"])
@pytest.mark.parametrize("size,f", [(1, 2), (3, 2), (4, 2), (3, 16)])  # f >= 16: four phases
def test_conv_transpose_matches_definition(impl, size, f):
  rng = np.random.default_rng(size)
  x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
  w = rng.normal(size=(4, 4, 3, f)).astype(np.float32)
  out = layers.conv_transpose2x(jnp.asarray(x), jnp.asarray(w), impl)
  chex.assert_shape(out, (2, 2 * size, 2 * size, f))
  np.testing.assert_allclose(np.asarray(out), reference_conv_transpose(x, w), atol=1e-4, rtol=1e-4)


def _resize_conv_reference(x, w3):
  """Nearest-neighbour 2x upsampling, then the 3x3 'same' convolution: the definition."""
  up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return jax.lax.conv_general_dilated(up, w3, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["xla", "phase", "matmul"])
@pytest.mark.parametrize("size,c,f", [(3, 2, 3), (4, 3, 16)])  # f >= 16: four phases
def test_resize_conv_is_upsampling_then_3x3_conv(impl, size, c, f):
  """The folded 4x4 kernel run as a transposed convolution equals nearest upsampling and the 3x3
  convolution, in value and in both gradients, borders included."""
  key = jax.random.key(size * 10 + f)
  x = jax.random.normal(key, (2, size, size, c))
  w3 = jax.random.normal(jax.random.fold_in(key, 1), (3, 3, c, f))
  t = jax.random.normal(jax.random.fold_in(key, 2), (2, 2 * size, 2 * size, f))

  def folded(x, w3):
    return layers.conv_transpose2x(x, layers.resize_conv_kernel(w3), impl)

  loss = lambda fn: jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(jnp.sin(fn(x, w)) * t),
                                               argnums=(0, 1)))
  out, ref = folded(x, w3), _resize_conv_reference(x, w3)
  chex.assert_shape(out, (2, 2 * size, 2 * size, f))
  chex.assert_trees_all_close(out, ref, atol=1e-4, rtol=1e-4)
  chex.assert_trees_all_close(loss(folded)(x, w3), loss(_resize_conv_reference)(x, w3),
                              atol=1e-3, rtol=1e-3)
  with pytest.raises(ValueError, match="3x3 kernel"):
    layers.resize_conv_kernel(jnp.zeros((4, 4, c, f)))


@pytest.mark.slow
def test_resize_conv_has_no_checkerboard():
  """A constant input through a random resize-convolution is constant away from the border: every
  output phase sums all nine taps.  A random 4x4 transposed kernel gives four different values."""
  x = jnp.ones((1, 6, 6, 2))
  key = jax.random.key(3)
  m = layers.ResizeConv2x(4, impl="phase")
  y = m.apply(m.init(key, x), x)[0, 2:-2, 2:-2]
  chex.assert_trees_all_close(y, jnp.broadcast_to(y[:1, :1], y.shape), atol=1e-5)
  t = layers.ConvTranspose2x(4, impl="phase")
  y = t.apply(t.init(key, x), x)[0, 2:-2, 2:-2]
  assert float(jnp.max(jnp.abs(y - y[:1, :1]))) > 1e-2


@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 1, 4, 2), (3, 2, 1, 1), (2, 12, 12, 4)])
def test_blur_is_the_edge_padded_binomial_filter_and_its_own_adjoint(shape):
  """binomial_blur equals [1, 2, 1] / 4 along each axis of numpy's edge-padded array (axes of
  length 1 and 2 included), and autodiff's gradient of <blur(x), g> is blur(g): the filter with
  repeated edges is symmetric, whatever form the code writes it in."""
  x = np.asarray(jax.random.normal(jax.random.key(0), shape), np.float64)
  ref = x
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (1, 1)
    p = np.pad(ref, pad, mode="edge")
    n = ref.shape[axis]
    ref = (np.take(p, range(0, n), axis) + 2 * np.take(p, range(1, n + 1), axis)
           + np.take(p, range(2, n + 2), axis)) / 4
  chex.assert_trees_all_close(layers.binomial_blur(jnp.asarray(x, jnp.float32)),
                              ref.astype(np.float32), atol=1e-6)
  g = jax.random.normal(jax.random.key(1), shape)
  grad = jax.grad(lambda x: jnp.sum(layers.binomial_blur(x) * g))(jnp.asarray(x, jnp.float32))
  chex.assert_trees_all_close(grad, layers.binomial_blur(g), atol=1e-6)


def test_blur_upsampling_draws_no_checkerboard_and_keeps_constants():
  """The blur removes the highest frequency: an alternating pattern vanishes (away from the
  edges), a constant passes, borders included; so the blurred transposed convolution's output
  has no checkerboard, where the same kernel without the blur has one."""
  alternating = (np.indices((8, 8)).sum(0) % 2 * 2 - 1.0)[None, ..., None]
  chex.assert_trees_all_close(layers.binomial_blur(jnp.asarray(alternating))[0, 1:-1, 1:-1],
                              jnp.zeros((6, 6, 1)), atol=1e-6)
  chex.assert_trees_all_close(layers.binomial_blur(jnp.full((1, 5, 7, 2), 3.0)),
                              jnp.full((1, 5, 7, 2), 3.0), atol=1e-6)
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
  m = layers.BlurConvTranspose2x(4, impl="phase")
  params = m.init(jax.random.key(1), x)
  y = m.apply(params, x)
  plain = layers.ConvTranspose2x(4, impl="phase").apply(params, x)
  chex.assert_trees_all_close(y, layers.binomial_blur(plain), atol=1e-6)

  def nyquist(a):  # energy at the highest frequency in each axis, interior only
    a = np.asarray(a)[:, 2:-2, 2:-2]
    f = np.abs(np.fft.fft2(a, axes=(1, 2)))**2
    h = a.shape[1] // 2
    return f[:, h, :].sum() + f[:, :, h].sum()

  assert nyquist(y) < 0.05 * nyquist(plain)


@pytest.mark.slow
def test_gradients_agree_including_second_order():
  """WGAN-GP differentiates the critic twice: all implementations must agree there too."""
  key = jax.random.key(0)
  x = jax.random.normal(key, (2, 8, 8, 2))
  w1 = jax.random.normal(jax.random.fold_in(key, 1), (4, 4, 2, 3)) * 0.3
  w2 = jax.random.normal(jax.random.fold_in(key, 2), (4, 4, 3, 2)) * 0.3

  def penalty(params, impl):
    def critic(im):
      h = jnp.tanh(layers.conv2d(im, params[0], 2, impl))
      return jnp.sum(layers.conv_transpose2x(h, params[1], impl) ** 2)
    g = jax.grad(critic)(x)
    return jnp.sum(g**2)

  grads = {impl: jax.grad(penalty)((w1, w2), impl) for impl in layers.IMPLS}
  chex.assert_tree_all_finite(grads)
  chex.assert_trees_all_close(grads["phase"], grads["xla"], atol=1e-3, rtol=1e-3)
  chex.assert_trees_all_close(grads["matmul"], grads["xla"], atol=1e-3, rtol=1e-3)


def test_resolve_impl():
  assert layers.resolve_impl("matmul") == "matmul"
  assert layers.resolve_impl("auto") == "phase"  # tests run on CPU
  with pytest.raises(ValueError, match="conv impl"):
    layers.resolve_impl("cudnn")


def test_bad_shapes_are_named():
  x = jnp.zeros((1, 5, 5, 1))
  with pytest.raises(ValueError, match="even input size"):
    layers.conv2d(x, jnp.zeros((4, 4, 1, 1)), 2, "phase")
  with pytest.raises(ValueError, match="odd kernel"):
    layers.conv2d(x, jnp.zeros((2, 2, 1, 1)), 1, "phase")
  with pytest.raises(ValueError, match="4x4 kernel"):
    layers.conv_transpose2x(x, jnp.zeros((3, 3, 1, 1)), "phase")


def assert_matches_autodiff(fn, x, w, t):
  """``fn(x, w, impl)``: the "phase" form against autodiff of the "xla" form: values, first-order
  gradients (input and kernel) and a second-order gradient."""
  def orders(impl):  # one jitted program per form (op-by-op dispatch compiles every op apart)
    loss = lambda x, w: jnp.sum(jnp.sin(fn(x, w, impl)) * t)
    first = jax.grad(loss, argnums=(0, 1))
    # Second order: the gradient of a function of the first-order gradients.
    second = jax.grad(lambda x, w: sum(jnp.sum(g**2) for g in first(x, w)), argnums=(0, 1))
    return jax.jit(lambda x, w: (fn(x, w, impl), first(x, w), second(x, w)))(x, w)

  (value, first, second), (value_ref, first_ref, second_ref) = orders("phase"), orders("xla")
  chex.assert_trees_all_close(value, value_ref, atol=1e-4, rtol=1e-4)
  chex.assert_trees_all_close(first, first_ref, atol=1e-4, rtol=1e-4)
  chex.assert_trees_all_close(second, second_ref, atol=1e-3, rtol=1e-3)


# f >= 16 runs the forward as four per-phase convolutions, below as one 3x3 to 4F channels.
@pytest.mark.slow
@pytest.mark.parametrize("n,size,c,f", [(2, 1, 3, 2), (3, 3, 2, 4), (1, 6, 4, 1), (2, 3, 3, 16),
                                        (1, 4, 17, 20)])
def test_phase_transpose_backward_matches_autodiff(n, size, c, f):
  """The phase form's own backward pass equals autodiff of the lax.conv_general_dilated form:
  values, first-order gradients (input and kernel) and a second-order gradient."""
  key = jax.random.key(n * 100 + size * 10 + c)
  x = jax.random.normal(key, (n, size, size, c))
  w = jax.random.normal(jax.random.fold_in(key, 1), (4, 4, c, f)) * 0.5
  t = jax.random.normal(jax.random.fold_in(key, 2), (n, 2 * size, 2 * size, f))
  assert_matches_autodiff(layers.conv_transpose2x, x, w, t)


# The stride-2 convolution's input gradient is a transposed convolution to c channels: c >= 16
# takes the four-phase form, thinner inputs the 3x3 one.
@pytest.mark.slow
@pytest.mark.parametrize("n,size,c,f", [(2, 2, 3, 2), (3, 6, 1, 4), (2, 4, 16, 3), (1, 4, 20, 17)])
def test_phase_strided_conv_backward_matches_autodiff(n, size, c, f):
  key = jax.random.key(n * 100 + size * 10 + c)
  x = jax.random.normal(key, (n, size, size, c))
  w = jax.random.normal(jax.random.fold_in(key, 1), (4, 4, c, f)) * 0.5
  t = jax.random.normal(jax.random.fold_in(key, 2), (n, size // 2, size // 2, f))
  assert_matches_autodiff(lambda x, w, impl: layers.conv2d(x, w, 2, impl), x, w, t)


@pytest.mark.parametrize("env,version,expected", [
    ({}, "0.10.2", "--xla_cpu_experimental_ynn_fusion_type="),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}, "0.9.0",
     "--xla_force_host_platform_device_count=4 --xla_cpu_experimental_ynn_fusion_type="),
    # The user's own setting, the opt-out and a jaxlib without the flag are left alone.
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_dot"}, "0.10.2",
     "--xla_cpu_experimental_ynn_fusion_type=individual_dot"),
    ({"XLA_FLAGS": "--a=1", "JFESGAN_XLA_DEFAULTS": "0"}, "0.10.2", "--a=1"),
    ({}, "0.8.0", None),
])
def test_package_sets_the_xla_cpu_default_only_where_it_may(monkeypatch, env, version, expected):
  from importlib import metadata

  import jfesgan
  for name in ("XLA_FLAGS", "JFESGAN_XLA_DEFAULTS"):
    monkeypatch.delenv(name, raising=False)
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  real_version = metadata.version
  monkeypatch.setattr(metadata, "version",
                      lambda name: version if name == "jaxlib" else real_version(name))
  jfesgan._set_xla_defaults()
  import os
  assert os.environ.get("XLA_FLAGS") == expected
