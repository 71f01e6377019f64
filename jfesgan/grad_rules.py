"""The intra-class loss with real-data-guided back-propagation (RDBP), as one ``jax.custom_vjp``.

Kept alone in this module because it is the one place where jfesgan's gradients are not plain
autodiff.  The public entry point is :func:`jfesgan.losses.intra_class_loss`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jfesgan.losses import class_means


def real_centres(f_real: jax.Array, y_real: jax.Array, num_classes: int,
                 memory: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  """Class centres from real features: (centres (K, D), valid (K,) bool).

  ``m_k`` is the mean of the real features of class k in the (global) batch; a class with no real
  sample takes ``memory[k]`` (running real centres) when ``memory`` is given, and is marked
  invalid otherwise.
  """
  centres, counts = class_means(f_real, y_real, num_classes)
  has_real = counts > 0
  if memory is None:
    return centres, has_real
  return jnp.where(has_real[:, None], centres, memory.astype(f_real.dtype)), jnp.ones_like(has_real)


def _forward(f_real, f_syn, y_real, y_syn, memory, num_classes):
  centres, valid = real_centres(f_real, y_real, num_classes, memory)
  n_r = max(f_real.shape[0], 1)
  n_s = max(f_syn.shape[0], 1)
  d_real = f_real - centres[y_real]
  d_syn = (f_syn - centres[y_syn]) * valid[y_syn][:, None].astype(f_syn.dtype)
  value = 0.5 * jnp.sum(d_real**2) / n_r + 0.5 * jnp.sum(d_syn**2) / n_s
  return value, (d_real / n_r, d_syn / n_s)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def rdbp_intra_class(f_real: jax.Array, f_syn: jax.Array, y_real: jax.Array, y_syn: jax.Array,
                     memory: jax.Array | None, num_classes: int) -> jax.Array:
  r"""Intra-class loss with real-data-guided back-propagation.

  With real features :math:`f^r_i` (labels :math:`y_i`, :math:`N_r` of them), synthetic features
  :math:`f^s_j` (labels :math:`c_j`, :math:`N_s` of them) and real class centres
  :math:`m_k = \frac{1}{|\{i: y_i = k\}|}\sum_{i: y_i = k} f^r_i` (or the running centre
  ``memory[k]`` for a class with no real sample; without ``memory`` such synthetic samples have
  weight :math:`w_j = 0`, else :math:`w_j = 1`):

  .. math::
     L = \frac{1}{2N_r}\sum_i \lVert f^r_i - m_{y_i}\rVert^2
       + \frac{1}{2N_s}\sum_j w_j \lVert f^s_j - m_{c_j}\rVert^2

  Backward pass (centres are constants, as in center loss; synthetic data never moves them):

  .. math::
     \frac{\partial L}{\partial f^r_i} = \frac{f^r_i - m_{y_i}}{N_r}, \qquad
     \frac{\partial L}{\partial f^s_j} = w_j\,\frac{f^s_j - m_{c_j}}{N_s},

  and nothing flows from the synthetic term into the real features through the centres, nor into
  ``memory``.  (For the real term alone this is also the exact gradient, since the deviations of
  a class from its own mean sum to zero.)
  """
  return _forward(f_real, f_syn, y_real, y_syn, memory, num_classes)[0]


def _fwd(f_real, f_syn, y_real, y_syn, memory, num_classes):
  value, residuals = _forward(f_real, f_syn, y_real, y_syn, memory, num_classes)
  return value, (residuals, memory)


def _bwd(num_classes, res, g):
  del num_classes
  (g_real, g_syn), memory = res
  zero_memory = None if memory is None else jnp.zeros_like(memory)
  return g * g_real, g * g_syn, None, None, zero_memory


rdbp_intra_class.defvjp(_fwd, _bwd)
