"""Loss functions.  Each takes arrays and returns a scalar; none knows about parameters.

The intra-class loss with real-data-guided back-propagation (RDBP) is here too, as one
``jax.custom_vjp`` (:func:`rdbp_intra_class`): the one place where jfesgan's gradients are not
plain autodiff.  Its public entry point is :func:`intra_class_loss`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of argmax predictions equal to ``labels``."""
  return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def wgan_critic_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
  """Wasserstein critic loss: E[D(fake)] - E[D(real)]."""
  return jnp.mean(fake_scores) - jnp.mean(real_scores)


def wgan_generator_loss(fake_scores: jax.Array) -> jax.Array:
  """Wasserstein generator loss: -E[D(fake)]."""
  return -jnp.mean(fake_scores)


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array,
                     rng: jax.Array) -> jax.Array:
  """WGAN-GP: E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat uniformly between real and fake pairs.

  ``critic`` maps a batch of images to per-sample scores.  The inner gradient is taken with
  ``jax.grad``, so differentiating this penalty differentiates through it (a true second-order
  term, not a detached approximation).
  """
  alpha = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  x_hat = real + alpha * (fake - real)
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)
  norms = jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], -1)**2, axis=-1) + 1e-12)
  return jnp.mean((norms - 1.0)**2)


def r1_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
  """R1 (Mescheder et al. 2018): E[||grad_x D(x)||_2^2] at the real images.  As
  :func:`gradient_penalty`, the inner gradient is taken with ``jax.grad`` and differentiated
  through (second order)."""
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(real)
  return jnp.mean(jnp.sum(grads.reshape(grads.shape[0], -1)**2, axis=-1))


def ns_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Non-saturating GAN discriminator loss: -log sigmoid(real) - log(1 - sigmoid(fake))."""
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def ns_generator_loss(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating GAN generator loss: -log sigmoid(fake)."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def uniform_kl(logits: jax.Array) -> jax.Array:
  """Mean over the batch of KL(uniform || softmax(logits)) = -log K - mean_k log p_k: 0 where a
  classifier cannot tell the classes apart, large where it is sure of one (a Fader network's
  confusion target for the code, in a form that stays bounded below)."""
  k = logits.shape[-1]
  return jnp.mean(-jnp.log(k) - jnp.mean(jax.nn.log_softmax(logits, axis=-1), axis=-1))


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean absolute difference."""
  return jnp.mean(jnp.abs(a - b))


def total_variation(images: jax.Array) -> jax.Array:
  """Mean absolute difference between vertically and horizontally adjacent pixels (NHWC)."""
  dy = jnp.abs(images[:, 1:] - images[:, :-1])
  dx = jnp.abs(images[:, :, 1:] - images[:, :, :-1])
  return jnp.mean(dy) + jnp.mean(dx)


INTRA_CLASS_MODES = ("rdbp", "plain", "none")


def unit(features: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Features (N, D) scaled to unit L2 norm (the intra-class loss's ``intra_normalise`` option:
  the loss then measures angles, and cannot grow or shrink with the scale of the features)."""
  return features / jnp.sqrt(jnp.sum(features**2, -1, keepdims=True) + eps**2)


def class_means(features: jax.Array, labels: jax.Array,
                num_classes: int) -> tuple[jax.Array, jax.Array]:
  """(means (K, D), counts (K,)) of ``features`` (N, D) per class of ``labels``; the mean of a
  class without a sample is 0."""
  counts = jax.ops.segment_sum(jnp.ones(labels.shape, features.dtype), labels, num_classes)
  sums = jax.ops.segment_sum(features, labels, num_classes)
  return sums / jnp.maximum(counts, 1.0)[:, None], counts


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


def intra_class_loss(f_real: jax.Array, y_real: jax.Array, f_syn: jax.Array, y_syn: jax.Array, *,
                     num_classes: int, mode: str = "rdbp",
                     memory: jax.Array | None = None) -> jax.Array:
  """Intra-class loss of real features ``f_real`` (N_r, D) and synthetic features ``f_syn`` (N_s, D).

  Value: 1/(2 N_r) sum_i |f_real_i - m_{y_i}|^2 + 1/(2 N_s) sum_j |f_syn_j - m_{y_syn_j}|^2.

  - ``"rdbp"``: m_k is the mean of the real features of class k in the batch (``memory[k]``, the
    running real centre, for a class with no real sample; without ``memory`` such synthetic
    samples contribute zero); the backward pass treats the centres as constants, so synthetic
    features never pull real ones (:func:`rdbp_intra_class`).
  - ``"plain"``: m_k is the mean of the real AND synthetic features of class k; ordinary autodiff
    through everything (the ablation).  ``memory`` is not used.
  - ``"none"``: 0, with zero gradients.

  Under ``jax.jit`` over a device mesh the batch is the global batch, so are the centres.
  """
  if mode == "none":
    return jnp.zeros((), f_real.dtype)
  if mode == "rdbp":
    return rdbp_intra_class(f_real, f_syn, y_real, y_syn, memory, num_classes)
  if mode == "plain":
    f_all = jnp.concatenate([f_real, f_syn])
    y_all = jnp.concatenate([y_real, y_syn])
    centres, _ = class_means(f_all, y_all, num_classes)
    n_r, n_s = max(f_real.shape[0], 1), max(f_syn.shape[0], 1)
    return (0.5 * jnp.sum((f_real - centres[y_real])**2) / n_r
            + 0.5 * jnp.sum((f_syn - centres[y_syn])**2) / n_s)
  raise ValueError(f"intra-class mode must be one of {INTRA_CLASS_MODES}, got {mode!r}")


def update_centre_memory(memory: jax.Array, f_real: jax.Array, y_real: jax.Array, *,
                         decay: float) -> jax.Array:
  """EMA of the real class centres, from real features only; classes absent from the batch keep
  their value.  ``memory`` is (K, D)."""
  means, counts = class_means(f_real, y_real, memory.shape[0])
  updated = decay * memory + (1.0 - decay) * means
  return jax.lax.stop_gradient(jnp.where((counts > 0)[:, None], updated, memory))
