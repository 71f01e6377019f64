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
