"""Convolutions with three interchangeable implementations of the same function.

XLA:CPU runs plain stride-1 and strided forward convolutions fast, but differentiates a strided
convolution in its input, and a transposed one in anything, as convolutions over zero-dilated
inputs or with large windows, its slowest kinds.  Measured on 2 CPU cores (batch 16,
``jfesgan benchmark``), so every layer here can run as:

- ``"xla"``: ``lax.conv_general_dilated`` with strides / ``lhs_dilation``; the reference, and the
  fastest on GPU and TPU.
- ``"phase"``: the 4x4 stride-2 convolution and transposed convolution with their own backward
  passes (``jax.custom_vjp``), each the other's adjoint: the transposed convolution by phase
  decomposition, as four zero-free 2x2 stride-1 convolutions (one 3x3 convolution to 4F phase
  channels for thin outputs) and a depth-to-space interleave; the strided convolution's input
  gradient as that transposed convolution, its weight gradient XLA's own.  Up to 3.6x faster per
  layer than the ``xla`` form's gradients on CPU, and 4x per WGAN-GP critic step (second order).
- ``"matmul"``: im2col by shifted slices (space-to-depth for stride 2) and one matmul.

``"auto"`` resolves to ``"xla"`` off CPU and ``"phase"`` on CPU (also for the WGAN-GP critic,
differentiated twice, where it is 1.0-1.2x faster than ``"matmul"`` per step since XLA's YNNPACK
convolutions are off: see ``jfesgan/__init__.py``).  All implementations share parameter shapes
and compute the same function (``tests/layers_test.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

_DN = ("NHWC", "HWIO", "NHWC")
IMPLS = ("xla", "phase", "matmul")


def resolve_impl(impl: str) -> str:
  """Returns a concrete implementation for ``impl`` ("auto" or one of IMPLS)."""
  if impl == "auto":
    return "phase" if jax.default_backend() == "cpu" else "xla"
  if impl not in IMPLS:
    raise ValueError(f"conv impl must be 'auto' or one of {IMPLS}, got {impl!r}")
  return impl


def _patches(x: jax.Array, k: int, out_h: int, out_w: int) -> jax.Array:
  """Concatenates the k*k shifted windows of ``x`` along channels, ordered (ky, kx, c)."""
  cols = [x[:, i:i + out_h, j:j + out_w, :] for i in range(k) for j in range(k)]
  return jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]


def space_to_depth(x: jax.Array) -> jax.Array:
  """(N, H, W, C) -> (N, H/2, W/2, 4C), channels ordered (row phase, column phase, c)."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // 2, w // 2, 4 * c)


def _conv_valid(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """Stride-1 'VALID' convolution of an already padded input."""
  k = kernel.shape[0]
  if impl == "matmul":
    n, h, w, c = x.shape
    cols = _patches(x, k, h - k + 1, w - k + 1)
    return cols @ kernel.reshape(k * k * c, kernel.shape[-1])
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DN)


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, impl: str) -> jax.Array:
  """Convolution with 'same'-style padding: output spatial size is input size / stride.

  Stride 1 needs an odd kernel (padding k//2); stride 2 needs an even kernel (padding (k-2)/2,
  so a 4x4 kernel pads by 1 as in DCGAN-style discriminators) and even input sizes.
  """
  impl = resolve_impl(impl)
  k = kernel.shape[0]
  n, h, w, c = x.shape
  f = kernel.shape[-1]
  if stride == 1:
    if k % 2 != 1:
      raise ValueError(f"stride-1 convolution needs an odd kernel, got {k}")
    pad = k // 2
  elif stride == 2:
    if k % 2 != 0 or h % 2 or w % 2:
      raise ValueError(f"stride-2 convolution needs an even kernel and even input size, got kernel "
                       f"{k} on {h}x{w}")
    pad = (k - 2) // 2
  else:
    raise ValueError(f"stride must be 1 or 2, got {stride}")
  if impl == "phase" and stride == 2 and k == 4:
    return _phase_conv_down2x(x, kernel)
  if impl != "matmul":
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=_DN)
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
  if stride == 1:
    return _conv_valid(xp, kernel, impl)
  # Stride 2: in space-to-depth coordinates the k x k stride-2 kernel is a (k/2 x k/2) stride-1
  # kernel over 4C channels: kernel row ky = 2*dy + phase_y.
  kh = k // 2
  kern = kernel.reshape(kh, 2, kh, 2, c, f).transpose(0, 2, 1, 3, 4, 5)
  return _conv_valid(space_to_depth(xp), kern.reshape(kh, kh, 4 * c, f), impl)


def conv_transpose2x(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """4x4 transposed convolution, stride 2, padding 1 (PyTorch semantics): (N,H,W,C) -> (N,2H,2W,F).

  ``out[2i - 1 + ky, 2j - 1 + kx] += x[i, j] @ kernel[ky, kx]``.  Split into its four output
  phases, output phase (py, px) is a 2x2 window of the input padded by one, at offset (py, px),
  with taps ``kernel[3 - py - 2ty, 3 - px - 2tx]``.  The ``matmul`` form places the four 2x2
  windows in one 3x3 kernel with 4F outputs (zeros elsewhere), runs it as a stride-1 convolution
  and interleaves the phases; the ``phase`` form runs the four windows as four convolutions (the
  3x3 one below 16 outputs) and has its own backward pass (:func:`_phase_conv_transpose2x`).
  """
  impl = resolve_impl(impl)
  if kernel.shape[:2] != (4, 4):
    raise ValueError(f"conv_transpose2x needs a 4x4 kernel, got {kernel.shape[:2]}")
  if impl == "xla":
    return jax.lax.conv_general_dilated(
        x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2), dimension_numbers=_DN)
  if impl == "phase":
    return _phase_conv_transpose2x(x, kernel)
  return _phase_form(x, kernel, impl)


def _phase_form(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """The transposed convolution as one 3x3 stride-1 convolution to 4F phase channels."""
  n, h, w, c = x.shape
  f = kernel.shape[-1]
  zero = jnp.zeros((c, f), kernel.dtype)
  rows = []
  for i in range(3):  # 3x3 window row i, column j; phase (py, px) uses tap (i - py, j - px)
    cols = []
    for j in range(3):
      phases = []
      for py in (0, 1):
        for px in (0, 1):
          ty, tx = i - py, j - px
          phases.append(kernel[3 - py - 2 * ty, 3 - px - 2 * tx] if ty in (0, 1) and tx in (0, 1)
                        else zero)
      cols.append(jnp.stack(phases, axis=1))  # (C, 4, F)
    rows.append(jnp.stack(cols))
  big = jnp.stack(rows).reshape(3, 3, c, 4 * f)
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = _conv_valid(xp, big, impl).reshape(n, h, w, 2, 2, f)
  return out.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, f)


# Below this many output channels the four per-phase convolutions are too thin for XLA:CPU and
# the single 3x3 convolution to 4F phase channels is faster (measured at 1 and 3 channels).
_FOUR_PHASE_MIN_FEATURES = 16


def _four_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The transposed convolution as four zero-free 2x2 stride-1 convolutions, one per output
  phase, interleaved: phase (py, px) reads the input padded by one at offset (py, px)."""
  n, h, w, _ = x.shape
  f = kernel.shape[-1]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = []
  for py in (0, 1):
    cols = []
    for px in (0, 1):
      taps = jnp.stack([jnp.stack([kernel[3 - py - 2 * ty, 3 - px - 2 * tx] for tx in (0, 1)])
                        for ty in (0, 1)])
      cols.append(jax.lax.conv_general_dilated(xp[:, py:py + h + 1, px:px + w + 1], taps, (1, 1),
                                               "VALID", dimension_numbers=_DN))
    rows.append(jnp.stack(cols, axis=3))  # (N, H, W, px, F)
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, f)  # (N, H, py, W, px, F)


def _up2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """conv_transpose2x on XLA:CPU's fast paths: four phase convolutions, or one for thin outputs."""
  if kernel.shape[-1] >= _FOUR_PHASE_MIN_FEATURES:
    return _four_phases(x, kernel)
  return _phase_form(x, kernel, "phase")


def _down2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The 4x4, stride-2, padding-1 convolution as one XLA convolution."""
  return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)


def _down2x_kernel_grad(x: jax.Array, g: jax.Array, kernel: jax.Array) -> jax.Array:
  """Gradient of <_down2x(x, K), g> in K: XLA's own weight gradient (faster on CPU than any
  im2col or per-tap form measured)."""
  return jax.vjp(lambda k: _down2x(x, k), kernel)[1](g)[0]


@jax.custom_vjp
def _phase_conv_transpose2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
  r"""The phase form of :func:`conv_transpose2x` with a backward pass of zero-free products.

  With :math:`y_{2i-1+k_y,\,2j-1+k_x} \mathrel{+}= x_{ij} K_{k_y k_x}` and output cotangent
  :math:`g`, the transposed convolution is the adjoint of the stride-2 convolution ``_down2x``
  with input and output channels swapped (:math:`K^\top`): :math:`\langle T(x, K), g\rangle =
  \langle x, D(g, K^\top)\rangle`.  Hence

  .. math::
     \frac{\partial L}{\partial x} = D(g, K^\top), \qquad
     \frac{\partial L}{\partial K} = \Big(\frac{\partial}{\partial K'}
       \langle D(g, K'), x\rangle\Big)^\top,

  a stride-2 convolution and its weight gradient, both on XLA:CPU's fast paths (autodiff of
  the forward would compute the zero taps of the phase kernel and turn the weight gradient into
  a large-window convolution, XLA:CPU's slowest kind).  Both are ordinary JAX functions, so the
  rule can itself be differentiated (second order).
  """
  return _up2x(x, kernel)


def _phase_up_fwd(x, kernel):
  return _up2x(x, kernel), (x, kernel)


def _phase_up_bwd(res, g):
  x, kernel = res
  kt = kernel.transpose(0, 1, 3, 2)
  dx = _down2x(g, kt)
  dk = _down2x_kernel_grad(g, x, kt).transpose(0, 1, 3, 2)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


_phase_conv_transpose2x.defvjp(_phase_up_fwd, _phase_up_bwd)


@jax.custom_vjp
def _phase_conv_down2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The 4x4 stride-2 convolution whose input gradient is a phase-form transposed convolution.

  XLA differentiates a strided convolution in its input as a convolution of the cotangent
  dilated by zeros (``lhs_dilation``), which XLA:CPU runs up to 3.6x slower (batch 16, 64x64x32
  -> 64: 48 vs 13 ms; at parity on the smallest layers) than the same function as the
  transposed convolution :func:`_up2x` of the cotangent, ``dx = T(g, K^T)`` (the adjoint
  identity above).  The weight gradient stays XLA's own.
  """
  return _down2x(x, kernel)


def _phase_down_fwd(x, kernel):
  return _down2x(x, kernel), (x, kernel)


def _phase_down_bwd(res, g):
  x, kernel = res
  dx = _up2x(g, kernel.transpose(0, 1, 3, 2))
  return dx.astype(x.dtype), _down2x_kernel_grad(x, g, kernel).astype(kernel.dtype)


_phase_conv_down2x.defvjp(_phase_down_fwd, _phase_down_bwd)


class Conv(nn.Module):
  """2-D convolution (NHWC), stride 1 (odd kernel) or 2 (even kernel), output size = input / stride."""

  features: int
  kernel_size: int = 3
  strides: int = 1
  use_bias: bool = True
  impl: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
    y = conv2d(x, kernel.astype(x.dtype), self.strides, self.impl)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(x.dtype)
    return y


class ConvTranspose2x(nn.Module):
  """4x4, stride-2 transposed convolution that doubles the spatial size."""

  features: int
  use_bias: bool = True
  impl: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  def transposed_kernel(self, c: int) -> jax.Array:
    """The 4x4 kernel that :func:`conv_transpose2x` runs, from this layer's parameter."""
    # Fan-in of a stride-2 4x4 transposed conv is 4 taps x C per output pixel, not 16 x C: scale
    # the initialiser by declaring the kernel as (2, 2, 4C) for its variance, then reshape.
    return self.param("kernel", lambda key, shape: self.kernel_init(key, (2, 2, 4 * c, shape[-1]))
                      .reshape(shape), (4, 4, c, self.features))

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = conv_transpose2x(x, self.transposed_kernel(x.shape[-1]).astype(x.dtype), self.impl)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(x.dtype)
    return y


# Row k of the 4x4 transposed-convolution kernel as a sum of the rows d of a 3x3 kernel applied
# after nearest-neighbour 2x upsampling (one axis; ``resize_conv_kernel`` takes both).
_RESIZE_FOLD = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


def resize_conv_kernel(kernel: jax.Array) -> jax.Array:
  """The 4x4 kernel of :func:`conv_transpose2x` equal to nearest-neighbour 2x upsampling followed
  by the 3x3 'same' convolution ``kernel`` (Odena et al. 2016's resize-convolution).

  On one axis the upsampled input is ``up[o] = x[o // 2]``, so ``sum_d kernel[d] up[o + d - 1]``
  is ``(k1 + k2) x[i] + k0 x[i - 1]`` at ``o = 2i`` and ``(k0 + k1) x[i] + k2 x[i + 1]`` at
  ``o = 2i + 1``: the transposed convolution's ``out[2i - 1 + k] += x[i] kernel4[k]`` with
  ``kernel4 = (k2, k1 + k2, k0 + k1, k0)``, borders included (both pad with zeros).  Every output
  phase then sums all nine taps, so no phase can run ahead of the others (the checkerboard of a
  free 4x4 kernel), and the fast zero-free transposed convolution computes it at no extra cost."""
  if kernel.shape[:2] != (3, 3):
    raise ValueError(f"resize_conv_kernel needs a 3x3 kernel, got {kernel.shape[:2]}")
  fold = jnp.asarray(_RESIZE_FOLD, kernel.dtype)
  return jnp.einsum("ka,lb,abcf->klcf", fold, fold, kernel)


class ResizeConv2x(ConvTranspose2x):
  """Nearest-neighbour 2x upsampling and a 3x3 convolution, computed exactly as the equivalent 4x4
  stride-2 transposed convolution (:func:`resize_conv_kernel`); parameters are the 3x3 kernel."""

  def transposed_kernel(self, c: int) -> jax.Array:
    return resize_conv_kernel(self.param("kernel", self.kernel_init, (3, 3, c, self.features)))


def _edge_weights(n: int, dtype) -> jax.Array:
  """The centre tap of the [1, 2, 1] / 4 filter along an axis of length ``n`` with its edges
  repeated: 1/2, and 3/4 at the two ends (the repeated pixel adds its quarter to its own)."""
  w = np.full((n,), 0.5, np.float32)
  w[0] += 0.25
  w[-1] += 0.25
  return jnp.asarray(w, dtype)


def binomial_blur(x: jax.Array) -> jax.Array:
  """The fixed [1, 2, 1] / 4 filter along each spatial axis of (N, H, W, C) ``x``, edges repeated.

  Its response falls smoothly from 1 at zero frequency to exactly 0 at the highest (a pattern that
  alternates pixel by pixel), so what follows it cannot hold a checkerboard; a constant passes
  unchanged, borders included.

  Written as the neighbours' quarter each through zero padding, plus the centre tap as a
  per-row (per-column) weight that is 3/4 at the two ends (where the repeated edge pixel adds its
  quarter): a pad, slices and element-wise products, whose gradients are the same kinds that
  XLA fuses into one pass. Repeating the edges by concatenation (the same function to the last
  bit or two) made forward + backward 2.3-3.4x slower on XLA:CPU (docs/performance.md)."""
  _, h, w, _ = x.shape
  p = jnp.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)))
  y = (p[:, :-2] + p[:, 2:]) * 0.25 + x * _edge_weights(h, x.dtype)[:, None, None]
  p = jnp.pad(y, ((0, 0), (0, 0), (1, 1), (0, 0)))
  return (p[:, :, :-2] + p[:, :, 2:]) * 0.25 + y * _edge_weights(w, x.dtype)[:, None]


class BlurConvTranspose2x(ConvTranspose2x):
  """The 4x4 stride-2 transposed convolution, then :func:`binomial_blur` (the upsampling of
  StyleGAN-style generators): the transposed convolution keeps its 16 free taps per channel pair,
  and the blur removes the highest frequency, where its four output phases, each from its own
  2x2 taps, draw a checkerboard.  Applied at every upsampling, no level passes a grid to the next."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return binomial_blur(super().__call__(x))


UPSAMPLERS = {"transpose": ConvTranspose2x, "resize": ResizeConv2x, "blur": BlurConvTranspose2x}


def group_norm(channels: int, name: str | None = None, dtype=None) -> nn.GroupNorm:
  """GroupNorm with at most 8 groups that divide ``channels`` (per-sample, so sharding-neutral);
  its statistics are computed in float32 whatever ``dtype`` its output has."""
  groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
  return nn.GroupNorm(num_groups=groups, name=name, dtype=dtype)
