"""Loss functions.  Each takes arrays and returns a scalar; none knows about parameters."""

from __future__ import annotations

from typing import Callable

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


def intra_class_loss(f_real: jax.Array, y_real: jax.Array, f_syn: jax.Array, y_syn: jax.Array, *,
                     num_classes: int, mode: str = "rdbp",
                     memory: jax.Array | None = None) -> jax.Array:
  """Intra-class loss of real features ``f_real`` (N_r, D) and synthetic features ``f_syn`` (N_s, D).

  Value: 1/(2 N_r) sum_i |f_real_i - m_{y_i}|^2 + 1/(2 N_s) sum_j |f_syn_j - m_{y_syn_j}|^2.

  - ``"rdbp"``: m_k is the mean of the real features of class k in the batch (``memory[k]``, the
    running real centre, for a class with no real sample; without ``memory`` such synthetic
    samples contribute zero); the backward pass treats the centres as constants, so synthetic
    features never pull real ones (:func:`jfesgan.grad_rules.rdbp_intra_class`).
  - ``"plain"``: m_k is the mean of the real AND synthetic features of class k; ordinary autodiff
    through everything (the ablation).  ``memory`` is not used.
  - ``"none"``: 0, with zero gradients.

  Under ``jax.jit`` over a device mesh the batch is the global batch, so are the centres.
  """
  if mode == "none":
    return jnp.zeros((), f_real.dtype)
  if mode == "rdbp":
    from jfesgan import grad_rules  # the custom_vjp lives alone in its own module
    return grad_rules.rdbp_intra_class(f_real, f_syn, y_real, y_syn, memory, num_classes)
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
