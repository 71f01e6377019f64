"""Every loss reaches exactly the parameters it is meant to train; steps are pure and shardable."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jfesgan import losses, parallel, steps
from jfesgan import state as state_lib
from jfesgan.defaults import get_config
from jfesgan.models import build_models

K, SUBJECTS, N = 7, 6, 8


def _fesgan_setup(cfg):
  """(stage-1 loss, models, fresh stage-1 states, a batch of N random images, their params) for
  ``cfg``."""
  models = build_models(cfg, K, SUBJECTS)
  rng = jax.random.key(0)
  phi = state_lib.create_phi_state(models, cfg.phi.optimizer, jax.random.fold_in(rng, 1))
  states = state_lib.create_fesgan_states(models, cfg.fesgan.optimizer, jax.random.fold_in(rng, 2),
                                          phi)
  x = jax.random.uniform(jax.random.fold_in(rng, 3), (N, 32, 32, 1), minval=-1, maxval=1)
  batch = {"image": x, "label": jnp.arange(N) % K, "subject": jnp.arange(N) % SUBJECTS}
  params = {"g": states.g.params, "dimg": states.dimg.params, "dz": states.dz.params,
            "phi": states.phi.params}
  return steps.FesganLoss.from_config(cfg.fesgan), models, states, batch, params


@pytest.fixture(scope="module")
def setup(tiny_config):
  return _fesgan_setup(tiny_config)


def _in_warmup(states, models, tiny_config):
  """``states`` with g's phased optimiser of a 4-iteration warm-up in 10 updates (its first phase,
  ``fesgan.warmup.optimizer``, from fresh moments)."""
  cfg = tiny_config.copy_and_resolve_references()
  cfg.fesgan.warmup.steps = 4
  tx = state_lib.generator_optimizer(cfg.fesgan.optimizer, 10, cfg.fesgan.warmup)
  return states.replace(g=state_lib.TrainState.create(apply_fn=models.g.apply,
                                                      params=states.g.params, tx=tx))


def norms(grads):
  """L2 norm of the gradient per network, with g split into encoder and decoder."""
  out = {k: float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(v))))
         for k, v in grads.items() if k != "g"}
  for part in ("encoder", "decoder"):
    out[part] = float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(grads["g"][part]))))
  return out


@pytest.mark.slow
def test_generator_terms_reach_the_right_networks(setup):
  _, models, _, batch, params = setup
  rng = jax.random.key(5)
  for name in steps.GENERATOR_TERMS:
    grads = jax.grad(lambda p: steps.generator_terms(p, batch, rng, models=models)[0][name])(params)
    chex.assert_tree_all_finite(grads)
    n = norms(grads)
    # Every generator term trains the encoder; all but the latent term also the decoder.
    assert n["encoder"] > 0, (name, n)
    if name == "latent":
      assert n["decoder"] == 0 and n["dz"] > 0, n
    else:
      assert n["decoder"] > 0, (name, n)
    if name in ("rec", "identity", "tv"):
      assert n["dimg"] == 0 and n["dz"] == 0, (name, n)


@pytest.fixture(scope="module")
def coded(tiny_config):
  """The setup with the code's expression term on (``fesgan.code_expr_weight``): D_z holds a
  classifier of the code's expression."""
  cfg = tiny_config.copy_and_resolve_references()
  cfg.fesgan.code_expr_weight = 1.0
  return _fesgan_setup(cfg)


def _split_dz(grads):
  """L2 norms of D_z's gradient in its prior layers and in its expression classifier's."""
  dz = grads["dz"]
  part = lambda keep: float(jnp.sqrt(sum(jnp.sum(v**2) for k, layer in dz.items() if keep(k)
                                         for v in jax.tree.leaves(layer))))
  return part(lambda k: not k.startswith("expression")), part(lambda k: k.startswith("expression"))


@pytest.mark.slow
def test_code_expression_term_trains_the_encoder_and_its_classifier_only_dz(coded, setup):
  """``fesgan.code_expr_weight``: the generator's code_expr term (KL from uniform of D_z's reading
  of E(x)'s expression) reaches the encoder alone of g, not the decoder, D_img, Phi nor D_z's prior
  layers; D_z's classifier learns from its cross-entropy on the codes' labels, which reaches its
  expression layers alone (and no generator); D_z's prior layers are initialised as without the
  classifier, and the term is absent where the weight is 0."""
  loss, models, states, batch, params = coded
  rng = jax.random.key(5)
  assert models.dz.num_classes == K
  terms, _ = steps.generator_terms(params, batch, rng, models=models, loss=loss)
  assert float(terms["code_expr"]) >= 0
  grads = jax.grad(lambda p: steps.generator_terms(p, batch, rng, models=models, loss=loss)[0]
                   ["code_expr"])(params)
  n = norms(grads)
  assert n["encoder"] > 0 and n["decoder"] == 0 and n["dimg"] == 0 and n["phi"] == 0, n
  # Of D_z it reads the classifier alone (the generator's update steps g alone).
  assert _split_dz(grads)[0] == 0 and _split_dz(grads)[1] > 0
  z = models.g.apply({"params": params["g"]}, batch["image"], method="encode")
  prior = lambda p, labels: steps.latent_discriminator_loss(
      p, z, rng, models=models, labels=labels, cls_weight=loss.dz_cls)
  with_cls, metrics = prior(params["dz"], batch["label"])
  without, _ = prior(params["dz"], None)
  np.testing.assert_allclose(float(with_cls - without), float(metrics["dz/cls"]), rtol=1e-5)
  g_prior, g_cls = (_split_dz({"dz": jax.grad(lambda p, lab=lab: prior(p, lab)[0])(params["dz"])})
                    for lab in (None, batch["label"]))
  assert g_prior[0] > 0 and g_prior[1] == 0, g_prior  # the prior's loss: its layers alone
  assert g_cls[1] > 0, g_cls
  # Through the discriminators' loss: D_z's loss reaches D_z alone, its classifier included.
  grads = jax.grad(lambda p: steps.discriminator_losses(p, batch, rng, models=models,
                                                        loss=loss)[0]["dz"])(params)
  n = norms(grads)
  assert n["encoder"] == 0 and n["decoder"] == 0 and n["dimg"] == 0 and n["dz"] > 0, n
  assert min(_split_dz(grads)) > 0
  # The prior's layers start as a D_z without the classifier starts them.
  _, _, plain_states, _, plain = setup
  chex.assert_trees_all_equal(plain["dz"], {k: v for k, v in params["dz"].items()
                                            if not k.startswith("expression")})
  assert "code_expr" not in steps.generator_terms(plain, batch, rng, models=setup[1],
                                                  loss=setup[0])[0]


@pytest.mark.slow
@pytest.mark.parametrize("gan", steps.GAN_LOSSES)
def test_discriminator_losses_never_reach_the_generator(setup, gan):
  loss, models, _, batch, params = setup
  loss = dataclasses.replace(loss, gan=gan)
  rng = jax.random.key(6)
  for name in ("dimg", "dz"):
    grads = jax.grad(lambda p: steps.discriminator_losses(p, batch, rng, models=models,
                                                          loss=loss)[0][name])(params)
    chex.assert_tree_all_finite(grads)
    n = norms(grads)
    assert n["encoder"] == 0 and n["decoder"] == 0 and n["phi"] == 0, (name, n)
    assert n[name] > 0 and n["dz" if name == "dimg" else "dimg"] == 0, (name, n)


@pytest.mark.slow
def test_latent_discriminator_labels_prior_real_codes_fake(setup):
  """D_z is pushed up on prior samples and down on encoder codes (not the other way round)."""
  loss, models, states, batch, params = setup
  rng = jax.random.key(7)
  new, metrics = steps.discriminator_update(states, batch, rng, models=models, loss=loss)
  keys = steps.named_keys(rng, "syn", "gp", "prior")
  z_code = models.g.apply({"params": params["g"]}, batch["image"], method="encode")
  z_prior = jax.random.uniform(keys["prior"], z_code.shape, minval=-1.0, maxval=1.0)
  dz = lambda p, z: models.dz.apply({"params": p}, z)
  # Repeat the update a few times on the same batch: the margin must move the right way.
  s = new
  for _ in range(5):
    s, _ = steps.discriminator_update(s, batch, rng, models=models, loss=loss)
  before = float(jnp.mean(dz(states.dz.params, z_prior)) - jnp.mean(dz(states.dz.params, z_code)))
  after = float(jnp.mean(dz(s.dz.params, z_prior)) - jnp.mean(dz(s.dz.params, z_code)))
  assert after > before


@pytest.mark.slow
def test_gradient_penalty_second_order_is_real():
  """For a linear critic D(x) = <w, x>, ||grad_x D|| = ||w||, so GP = (||w|| - 1)^2 and
  d GP / dw = 2 (||w|| - 1) w / ||w||: only a real second-order gradient gets this right."""
  w = jnp.array([0.3, -1.2, 2.0, 0.5]).reshape(1, 2, 2, 1)
  real = jnp.ones((3, 2, 2, 1))
  fake = -jnp.ones((3, 2, 2, 1))

  def gp(w):
    return losses.gradient_penalty(lambda x: jnp.sum(x * w, axis=(1, 2, 3)), real, fake,
                                   jax.random.key(0))

  nw = jnp.linalg.norm(w)
  chex.assert_trees_all_close(gp(w), (nw - 1) ** 2, rtol=1e-5)
  chex.assert_trees_all_close(jax.grad(gp)(w), 2 * (nw - 1) * w / nw, rtol=1e-5)


def test_r1_penalty_second_order_is_real():
  """R1 at the real images only, for the critic D(x) = sum((w x)^2) / 2: grad_x D = w^2 x, so
  R1 = mean_i sum(w^4 x_i^2); its gradient in w (4 w^3 mean_i x_i^2) needs the second order."""
  w = jnp.array([0.3, -1.2, 2.0, 0.5]).reshape(1, 2, 2, 1)
  real = jnp.arange(12.0).reshape(3, 2, 2, 1) / 6 - 1
  r1 = lambda w: losses.r1_penalty(lambda x: jnp.sum((w * x)**2, axis=(1, 2, 3)) / 2, real)
  chex.assert_trees_all_close(r1(w), jnp.mean(jnp.sum(w**4 * real**2, axis=(1, 2, 3))), rtol=1e-5)
  chex.assert_trees_all_close(jax.grad(r1)(w), 4 * w**3 * jnp.mean(real**2, axis=0, keepdims=True),
                              rtol=1e-5)


@pytest.mark.slow
def test_r1_option_is_non_saturating_plus_r1_and_reaches_the_generator(setup):
  """fesgan.gan_loss='r1': D_img's loss is softplus(-D(real)) + softplus(D(fake)) + r1 * R1; the
  generator's adversarial term softplus(-D(fake)) trains the encoder and decoder (through D_img,
  which it does not train: the update takes only g's gradient)."""
  loss, models, _, batch, params = setup
  r1 = dataclasses.replace(loss, gan="r1", r1=2.5)
  real_s, fake_s = jnp.array([0.5, -1.0]), jnp.array([2.0, 0.0, -0.5, 1.0])
  critic = lambda im: jnp.sum(im**2, axis=(1, 2, 3))
  real = jnp.ones((2, 2, 2, 1))
  total, metrics = r1.critic_losses(real_s, fake_s, critic, real, -real, jax.random.key(0))
  adv = jnp.mean(jax.nn.softplus(-real_s)) + jnp.mean(jax.nn.softplus(fake_s))
  chex.assert_trees_all_close(total, adv + 2.5 * 16.0)  # grad = 2x: |.|^2 = 4 * 4 pixels
  chex.assert_trees_all_close(metrics["dimg/r1"], 16.0)
  chex.assert_trees_all_close(r1.generator_adv(fake_s), jnp.mean(jax.nn.softplus(-fake_s)))
  grads = jax.grad(lambda p: steps.generator_terms(p, batch, jax.random.key(5), models=models,
                                                   loss=r1)[0]["adv"])(params)
  n = norms(grads)
  assert n["encoder"] > 0 and n["decoder"] > 0 and n["dz"] == 0 and n["phi"] == 0, n


def _changed(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
def test_each_step_updates_only_its_players(setup):
  loss, models, states, batch, _ = setup
  rng = jax.random.key(8)
  d_new, d_metrics = steps.discriminator_update(states, batch, rng, models=models, loss=loss)
  assert _changed(d_new.dimg.params, states.dimg.params)
  assert _changed(d_new.dz.params, states.dz.params)
  assert not _changed(d_new.g.params, states.g.params)
  assert not _changed(d_new.phi.params, states.phi.params)
  g_new, g_metrics = steps.generator_update(states, batch, rng, models=models, loss=loss)
  assert _changed(g_new.g.params["encoder"], states.g.params["encoder"])
  assert _changed(g_new.g.params["decoder"], states.g.params["decoder"])
  for name in ("dimg", "dz", "phi"):
    assert not _changed(getattr(g_new, name).params, getattr(states, name).params), name
  chex.assert_tree_all_finite((d_metrics, g_metrics))
  assert {f"g/{t}" for t in steps.GENERATOR_TERMS} <= set(g_metrics)


@pytest.mark.slow
def test_the_warmup_trains_g_on_reconstruction_and_identity_alone(setup, tiny_config):
  """Stage 1's warm-up (``fesgan.warmup``) on rec and identity (the default's terms until
  2026-12-07; rec alone, then rec and latent since): the generator's loss is those terms,
  weighted, the same values as in the full terms; its gradient reaches the encoder and decoder
  only, and g steps with the warm-up's optimiser; the discriminators do not run in the
  generator's loss."""
  loss, models, states, batch, params = setup
  assert loss.warmup_terms == ("rec", "latent")  # today's default (tiny_config keeps it)
  loss = dataclasses.replace(loss, warmup_terms=("rec", "identity"))
  rng = jax.random.key(5)
  warm, _ = steps.generator_terms(params, batch, rng, models=models, loss=loss, warmup=True)
  full, _ = steps.generator_terms(params, batch, rng, models=models, loss=loss)
  assert set(warm) == {"rec", "identity"}
  chex.assert_trees_all_close(warm, {k: full[k] for k in warm})
  # fesgan.warmup.terms may keep the terms that need no D_img, at their full-recipe values.
  kept = dataclasses.replace(loss, warmup_terms=("rec", "latent", "tv"))
  warm3, _ = steps.generator_terms(params, batch, rng, models=models, loss=kept, warmup=True)
  assert set(warm3) == {"rec", "latent", "tv"}
  chex.assert_trees_all_close(warm3, {k: full[k] for k in warm3})
  with_dimg = dataclasses.replace(loss, warmup_terms=("rec", "expr"))  # D_img runs for expr
  warm2, _ = steps.generator_terms(params, batch, rng, models=models, loss=with_dimg, warmup=True)
  assert set(warm2) == {"rec", "expr"}
  chex.assert_trees_all_close(warm2, {k: full[k] for k in warm2})

  def total(p):
    terms, _ = steps.generator_terms(p, batch, rng, models=models, loss=loss, warmup=True)
    return loss.rec * terms["rec"] + loss.identity * terms["identity"]

  grads = jax.grad(total)(params)
  n = norms(grads)
  assert n["encoder"] > 0 and n["decoder"] > 0, n
  assert n["dimg"] == 0 and n["dz"] == 0, n  # (Phi's gradient is never applied: it is frozen)
  # The whole step: g moves by its warm-up optimiser (Adam at warmup.optimizer's settings from
  # fresh moments) on exactly that gradient; the other players do not move in g's update.
  warm = _in_warmup(states, models, tiny_config)
  new, metrics = steps.generator_update(warm, batch, rng, models=models,
                                        loss=loss, warmup=True)
  assert not any(k in metrics for k in ("g/adv", "g/latent", "g/expr", "g/expr_acc_t"))
  chex.assert_trees_all_close(metrics["g/loss"], total(params), rtol=1e-6)
  adam = state_lib.make_optimizer(tiny_config.fesgan.warmup.optimizer, 4)
  updates, _ = adam.update(grads["g"], adam.init(states.g.params), states.g.params)
  chex.assert_trees_all_close(new.g.params, optax.apply_updates(states.g.params, updates),
                              atol=1e-6)
  for name in ("dimg", "dz", "phi"):
    assert not _changed(getattr(new, name).params, getattr(states, name).params), name


def test_the_warmup_draws_only_the_images_its_terms_read(setup):
  """The warm-up's terms rec and identity read no x_p, so the decoder does not draw it (a
  third of its work); the translations and reconstructions are the full step's, c_t drawn from the
  same key; with tv (which reads x_p) among the warm-up's terms x_p is drawn as in the full step;
  with rec alone neither x_t nor x_p; label-free, the same."""
  loss, models, _, batch, params = setup
  loss = dataclasses.replace(loss, warmup_terms=("rec", "identity"))
  rng = jax.random.key(5)
  _, warm = steps.generator_terms(params, batch, rng, models=models, loss=loss, warmup=True)
  _, full = steps.generator_terms(params, batch, rng, models=models, loss=loss)
  assert "x_p" not in warm and "x_p" in full
  for k in ("x_t", "x_rec", "c_t", "z"):
    chex.assert_trees_all_close(warm[k], full[k], atol=1e-5)
  tv = dataclasses.replace(loss, warmup_terms=("rec", "tv"))
  terms, with_tv = steps.generator_terms(params, batch, rng, models=models, loss=tv, warmup=True)
  chex.assert_trees_all_close(with_tv["x_p"], full["x_p"], atol=1e-5)
  chex.assert_trees_all_close(terms["tv"], losses.total_variation(full["x_t"])
                              + losses.total_variation(full["x_p"]), rtol=1e-5)
  # Reconstruction alone draws x_rec alone (Phi does not run), at the full step's value.
  rec = dataclasses.replace(loss, warmup_terms=("rec",))
  terms, rec_only = steps.generator_terms(params, batch, rng, models=models, loss=rec, warmup=True)
  assert not {"x_t", "x_p"} & set(rec_only) and set(terms) == {"rec"}
  chex.assert_trees_all_close(rec_only["x_rec"], full["x_rec"], atol=1e-5)
  x, y = batch["image"], batch["label"]
  free = steps.synthesise(params["g"], x, y, rng, models=models, labels=False)
  alone = steps.synthesise(params["g"], x, y, rng, models=models, labels=False,
                           new_identities=False)
  assert set(free) - set(alone) == {"x_p"}
  chex.assert_trees_all_close(alone["x_rec"], free["x_rec"], atol=1e-5)


def test_a_step_without_the_discriminators_moves_g_alone(setup, tiny_config):
  """``update_d=False`` (the warm-up's iterations before its last ``fesgan.warmup.d_steps``): the step is
  the generator's warm-up update alone, to the bit, and D_img, D_z and their optimiser states do
  not move; with ``update_d`` the discriminators step as before (terms that read neither D_img
  nor D_z: rec alone)."""
  loss, models, states, batch, _ = setup
  loss = dataclasses.replace(loss, warmup_terms=("rec",))
  rng = jax.random.key(7)
  states = _in_warmup(states, models, tiny_config)
  alone, metrics = steps.fesgan_step(states, batch, rng, models=models, loss=loss, warmup=True,
                                     update_d=False)
  g_keys = steps.named_keys(rng, "d", "g")["g"]
  want, want_metrics = steps.generator_update(states, batch, g_keys, models=models, loss=loss,
                                              warmup=True)
  assert set(metrics) == set(want_metrics) and not any(k.startswith("d") for k in metrics)
  chex.assert_trees_all_equal((alone.g, alone.g_ema), (want.g, want.g_ema))
  for name in ("dimg", "dz"):
    chex.assert_trees_all_equal(getattr(alone, name).replace(step=0),
                                getattr(states, name).replace(step=0))
    # The iteration is counted all the same: FesganStates.step is where a run resumes.
    assert int(getattr(alone, name).step) == int(getattr(states, name).step) + 1, name
  assert int(alone.step) == int(states.step) + 1
  both, both_metrics = steps.fesgan_step(states, batch, rng, models=models, loss=loss,
                                         warmup=True)
  assert _changed(both.dimg.params, states.dimg.params) and _changed(both.dz.params, states.dz.params)
  assert any(k.startswith("dimg/") for k in both_metrics)


@pytest.mark.parametrize("term", ["latent", pytest.param("code_expr", marks=pytest.mark.slow)])
def test_a_warmup_reading_dz_steps_dz_alone_before_the_discriminators_start(request, tiny_config,
                                                                            term):
  """A warm-up term that reads D_z (``latent``; ``code_expr``, its classifier of the code's
  expression) in the iterations before the discriminators start (``update_dz``, which the stage's
  plan sets there: stages_test): D_z steps there alone on the loss it has in a full step (same
  key, same value; with the classifier, its cross-entropy on the codes' labels too), D_img and its
  optimiser state do not move (its step counts the iteration), and g's update is the warm-up's
  against the D_z just stepped."""
  loss, models, states, batch, params = request.getfixturevalue(
      "coded" if term == "code_expr" else "setup")
  rng = jax.random.key(7)
  states = _in_warmup(states, models, tiny_config)
  warm = dataclasses.replace(loss, warmup_terms=("rec", term))
  out, metrics = steps.fesgan_step(states, batch, rng, models=models, loss=warm, warmup=True,
                                   update_d=False, update_dz=True)
  keys = steps.named_keys(rng, "d", "g")
  _, full = steps.discriminator_losses(params, batch, keys["d"], models=models, loss=warm)
  np.testing.assert_allclose(float(metrics["dz/loss"]), float(full["dz/loss"]), rtol=1e-5)
  assert not any(k.startswith("dimg/") for k in metrics) and f"g/{term}" in metrics
  assert ({"dz/cls", "dz/cls_acc"} <= set(metrics)) == (term == "code_expr")
  assert ("g/latent" in metrics) == (term == "latent")
  if term == "code_expr":  # both of D_z's heads step: the prior's and the classifier's layers
    before, after = (_split_dz({"dz": s.dz.params}) for s in (states, out))
    assert after[0] != before[0] and after[1] != before[1]
  assert _changed(out.dz.params, states.dz.params) and int(out.dz.step) == int(states.dz.step) + 1
  chex.assert_trees_all_equal((out.dimg.params, out.dimg.opt_state),
                              (states.dimg.params, states.dimg.opt_state))
  assert int(out.dimg.step) == int(states.dimg.step) + 1
  stepped, _ = steps.latent_discriminator_update(states, batch, keys["d"], models=models,
                                                 loss=warm)
  chex.assert_trees_all_equal(out.dz, stepped.dz)
  want, _ = steps.generator_update(stepped, batch, keys["g"], models=models, loss=warm,
                                   warmup=True)
  chex.assert_trees_all_equal(out.g, want.g)


@pytest.mark.slow
def test_solo_terms_are_the_warmups_terms_before_the_discriminators_start(setup, tiny_config):
  """``fesgan.warmup.solo_terms``: the step without the discriminators is the generator's warm-up
  update on those terms alone, to the bit; the step with them keeps ``warmup.terms``."""
  loss, models, states, batch, _ = setup
  rng = jax.random.key(7)
  states = _in_warmup(states, models, tiny_config)
  solo = dataclasses.replace(loss, warmup_terms=("rec", "identity"), solo_terms=("rec",))
  alone, metrics = steps.fesgan_step(states, batch, rng, models=models, loss=solo, warmup=True,
                                     update_d=False)
  want, want_metrics = steps.generator_update(
      states, batch, steps.named_keys(rng, "d", "g")["g"], models=models,
      loss=dataclasses.replace(loss, warmup_terms=("rec",)), warmup=True)
  assert set(metrics) == set(want_metrics) and "g/identity" not in metrics
  chex.assert_trees_all_equal((alone.g, alone.g_ema), (want.g, want.g_ema))
  _, both_metrics = steps.fesgan_step(states, batch, rng, models=models, loss=solo, warmup=True)
  assert {"g/rec", "g/identity"} <= set(both_metrics) and "dimg/loss" in both_metrics


def test_phased_optimizer_switches_once_with_fresh_moments():
  """g's warm-up optimiser: the first phase's updates, then the second's as if it started at the
  switch (fresh moments, its schedule's count at 0); each g update counts, so with n_critic = 2
  a warm-up of 5 iterations is 2 of g's updates."""
  first, second = optax.sgd(0.5), optax.adam(optax.linear_schedule(0.1, 0.0, 4))
  tx = state_lib.phased(first, second, 2)
  params = {"w": jnp.arange(3.0)}
  grads = [{"w": jnp.full(3, float(i + 1)) * jnp.array([1.0, -2.0, 0.5])} for i in range(5)]
  state, fresh, told = tx.init(params), second.init(params), tx.init(params)
  for i, g in enumerate(grads):
    u, state = tx.update(g, state, params)
    if i < 2:
      want = first.update(g, first.init(params), params)[0]
    else:
      want, fresh = second.update(g, fresh, params)
    chex.assert_trees_all_close(u, want)
    # A caller that knows the phase (stage 1's step variants) gets the same update and state.
    u_told, told = jax.jit(functools.partial(tx.update, early=i < 2))(g, told, params)
    chex.assert_trees_all_close((u_told, told), (u, state))
  assert int(state.count) == 5
  c = get_config()
  c.fesgan.warmup.steps = 5
  phased = state_lib.generator_optimizer(c.fesgan.optimizer, 10, c.fesgan.warmup, n_critic=2)
  state = phased.init(params)
  for g in grads[:3]:
    _, state = phased.update(g, state, params)
  assert int(state.second[0].count) == 1  # 2 warm-up updates, then the main optimiser's first
  c.fesgan.warmup.steps = 20
  with pytest.raises(ValueError, match=r"fesgan\.warmup\.steps=20 leaves no generator update"):
    state_lib.generator_optimizer(c.fesgan.optimizer, 10, c.fesgan.warmup, n_critic=2)


@pytest.mark.slow
def test_phi_step_learns_subjects_and_ignores_expressions(setup):
  """Stage 0 trains Phi (trunk and subject directions) on subject ids; expression labels play no
  part: relabelling the expressions changes nothing, relabelling the subjects does."""
  _, models, states, batch, _ = setup
  step = lambda b: steps.phi_step(states.phi, b, jax.random.key(0), model=models.phi)
  new, metrics = step(batch)
  assert _changed(new.params["trunk"], states.phi.params["trunk"])
  assert _changed(new.params["subject_directions"], states.phi.params["subject_directions"])
  assert int(new.step) == int(states.phi.step) + 1
  _, logits = models.phi.apply({"params": states.phi.params}, batch["image"])
  chex.assert_trees_all_close(metrics["phi/loss"], losses.cross_entropy(logits, batch["subject"]))
  relabelled, _ = step(dict(batch, label=(batch["label"] + 3) % K))
  chex.assert_trees_all_equal(relabelled.params, new.params)
  resubjected, _ = step(dict(batch, subject=(batch["subject"] + 1) % SUBJECTS))
  assert _changed(resubjected.params, new.params)


@pytest.mark.slow
@pytest.mark.parametrize("update_g", [True, False])
def test_sharded_step_equals_single_device(setup, tiny_config, update_g):
  loss, models, _, batch, _ = setup
  assert jax.device_count() >= 4, "conftest sets 4 fake CPU devices"
  # Adam turns float-rounding noise in a near-zero gradient into a full-size step; SGD keeps
  # the comparison about the gradients, which is what sharding could change.
  cfg = tiny_config.copy_and_resolve_references()
  for player in ("g", "dimg", "dz"):
    cfg.fesgan.optimizer[player].name = "sgd"
    cfg.fesgan.optimizer[player].lr = 0.1
  rng = jax.random.key(9)
  results = []
  for n in (1, 4):
    chex.clear_trace_counter()
    mesh = parallel.make_mesh(n)
    phi = state_lib.create_phi_state(models, cfg.phi.optimizer, jax.random.key(1))
    states = parallel.replicate(state_lib.create_fesgan_states(
        models, cfg.fesgan.optimizer, jax.random.key(2), phi), mesh)
    @chex.assert_max_traces(n=1)  # two calls below: one trace, no retracing
    def traced(states, batch, rng):
      return steps.fesgan_step(states, batch, rng, models=models, loss=loss, update_g=update_g)

    step = parallel.jit_step(traced, mesh)
    sharded = parallel.shard_batch(jax.device_get(batch), mesh)
    assert len(sharded["image"].sharding.device_set) == n
    for i in range(2):
      states, metrics = step(states, sharded, jax.random.fold_in(rng, i))
    results.append((jax.device_get(states), jax.device_get(metrics)))
  (s1, m1), (s4, m4) = results
  chex.assert_trees_all_close(s1.g.params, s4.g.params, atol=1e-5, rtol=1e-4)
  chex.assert_trees_all_close(s1.dimg.params, s4.dimg.params, atol=1e-5, rtol=1e-4)
  chex.assert_trees_all_close(s1.dz.params, s4.dz.params, atol=1e-5, rtol=1e-4)
  chex.assert_trees_all_close(m1, m4, atol=1e-4, rtol=1e-3)


def test_batch_must_split_over_devices():
  mesh = parallel.make_mesh(4)
  with pytest.raises(ValueError, match="batch_size=6"):
    parallel.check_batch_size(6, mesh)


@pytest.mark.slow
def test_dimg_augment_is_differentiable_and_reaches_the_same_networks(setup):
  """With fesgan.dimg_augment (DiffAugment), D_img sees warped images in both players' losses:
  the losses change, the generator's D_img terms still reach the generator through the warp,
  and the discriminator's loss still never reaches the generator."""
  loss, models, _, batch, params = setup
  aug = steps.Augment(rotate=10.0, scale=0.1, shift=0.1, contrast=0.3, brightness=0.2)
  on = dataclasses.replace(loss, dimg_augment=aug)
  rng = jax.random.key(8)
  seen = on.dimg_view(batch["image"], rng)
  assert seen.shape == batch["image"].shape and not np.allclose(seen, batch["image"])
  np.testing.assert_array_equal(loss.dimg_view(batch["image"], rng), batch["image"])
  # Jitted (eager dispatch compiles every operation apart: 105 s for this test).
  terms = lambda p, lo: steps.generator_terms(p, batch, rng, models=models, loss=lo)[0]
  d = lambda p, lo: steps.discriminator_losses(p, batch, rng, models=models, loss=lo)[0]["dimg"]
  values = jax.jit(lambda p: {"on": {**terms(p, on), "d": d(p, on)},
                              "off": {**terms(p, loss), "d": d(p, loss)}})(params)
  grads = jax.jit(lambda p: {k: jax.grad(lambda q: terms(q, on)[k])(p) for k in ("adv", "expr")}
                  | {"d": jax.grad(lambda q: d(q, on))(p)})(params)
  for name in ("adv", "expr"):
    assert float(values["on"][name]) != pytest.approx(float(values["off"][name]))
    n = norms(grads[name])
    assert n["encoder"] > 0 and n["decoder"] > 0 and n["dimg"] > 0, (name, n)
    assert n["phi"] == 0 and n["dz"] == 0, (name, n)
  assert float(values["on"]["d"]) != pytest.approx(float(values["off"]["d"]))
  n = norms(grads["d"])
  assert n["dimg"] > 0 and n["encoder"] == 0 and n["decoder"] == 0, n


def _edit_setup(tiny_config, edit):
  cfg = tiny_config.copy_and_resolve_references()
  cfg.model.g_edit = edit
  return _fesgan_setup(cfg)


@pytest.fixture(scope="module")
def edit_setup(tiny_config):
  """The setup with a generator that edits its input through a mask (model.g_edit="mask")."""
  return _edit_setup(tiny_config, "mask")


@pytest.fixture(scope="module")
def difference_setup(tiny_config):
  """The setup with a generator that adds the drawn change to its input (g_edit="difference")."""
  return _edit_setup(tiny_config, "difference")


@pytest.mark.slow
def test_an_editing_generator_blends_translations_and_draws_new_identities_whole(edit_setup):
  loss, models, _, batch, params = edit_setup
  x, y = batch["image"], batch["label"]
  rng = jax.random.key(9)
  syn = steps.synthesise(params["g"], x, y, rng, models=models)
  apply = lambda *a, **k: models.g.apply({"params": params["g"]}, *a, **k)
  z = apply(x, method="encode")
  drawing, mask = apply(z, jax.nn.one_hot(syn["c_t"], K), method="draw")
  chex.assert_shape(mask, (N, 32, 32, 1))
  assert float(mask.min()) >= 0 and float(mask.max()) <= 1
  # x_t is the drawing edited into x through the mask; x_rec and x_p are full drawings.
  chex.assert_trees_all_close(syn["x_t"], mask * drawing + (1 - mask) * x, atol=1e-5)
  chex.assert_trees_all_close(syn["mask_t"], mask, atol=1e-6)
  chex.assert_trees_all_close(syn["x_rec"], apply(z, jax.nn.one_hot(y, K), method="decode"),
                              atol=1e-5)
  chex.assert_trees_all_close(
      syn["x_p"], apply(syn["z_p"], jax.nn.one_hot(syn["c_p"], K), method="decode"), atol=1e-5)
  # The module's own translation is the same blend.
  chex.assert_trees_all_close(apply(x, jax.nn.one_hot(syn["c_t"], K)), syn["x_t"], atol=1e-5)
  # Where the mask is 0 the translation is the input, whatever the drawing.
  chex.assert_trees_all_close(steps.blend(x, drawing, jnp.zeros_like(mask)), x)


@pytest.mark.slow
@pytest.mark.parametrize("reconstruct", [True, False])
def test_a_difference_generator_adds_the_drawn_change_and_draws_new_identities_whole(
    difference_setup, reconstruct):
  _, models, _, batch, params = difference_setup
  x, y = batch["image"], batch["label"]
  syn = steps.synthesise(params["g"], x, y, jax.random.key(9), models=models,
                         reconstruct=reconstruct)
  apply = lambda *a, **k: models.g.apply({"params": params["g"]}, *a, **k)
  z, logits = apply(x, method="encode_source")
  chex.assert_shape(logits, (N, K))
  chex.assert_trees_all_close(syn["source_logits"], logits, atol=1e-5)
  source = apply(z, jax.nn.softmax(logits), method="decode")
  target = apply(z, jax.nn.one_hot(syn["c_t"], K), method="decode")
  # x_t is x plus the change between the two drawings of x's code, clipped to the image range.
  want = jnp.clip(x + target - source, -1, 1)
  chex.assert_trees_all_close(syn["x_t"], want, atol=1e-5)
  assert float(jnp.max(jnp.abs(want - x))) > 1e-3  # it does change x
  assert float(jnp.min(syn["x_t"])) >= -1 and float(jnp.max(syn["x_t"])) <= 1
  chex.assert_trees_all_close(
      syn["x_p"], apply(syn["z_p"], jax.nn.one_hot(syn["c_p"], K), method="decode"), atol=1e-5)
  if reconstruct:
    chex.assert_trees_all_close(syn["x_rec"], apply(z, jax.nn.one_hot(y, K), method="decode"),
                                atol=1e-5)
  else:
    assert "x_rec" not in syn
  # The module's own translation is the same; to x's own estimated expression it is x itself.
  chex.assert_trees_all_close(apply(x, jax.nn.one_hot(syn["c_t"], K)), syn["x_t"], atol=1e-5)
  chex.assert_trees_all_close(apply(x, jax.nn.softmax(logits)), jnp.clip(x, -1, 1), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("edit", ["mask", "difference"])
def test_an_editing_generators_terms_reach_the_right_networks(edit_setup, difference_setup, edit):
  loss, models, _, batch, params = edit_setup if edit == "mask" else difference_setup
  rng = jax.random.key(5)
  terms, _ = steps.generator_terms(params, batch, rng, models=models, loss=loss)
  assert set(terms) == set(steps.GENERATOR_TERMS) | set(steps.EDIT_TERMS[edit])
  for name in steps.EDIT_TERMS[edit] + ("adv", "expr", "identity", "rec"):
    grads = jax.grad(lambda p: steps.generator_terms(p, batch, rng, models=models,
                                                     loss=loss)[0][name])(params)
    chex.assert_tree_all_finite(grads)
    n = norms(grads)
    if name == "source":
      # The expression estimate trains the encoder only: its head, and the trunk under it.
      assert n["decoder"] == 0 and n["encoder"] > 0, n
      assert float(jnp.abs(grads["g"]["encoder"]["source"]["kernel"]).max()) > 0
    else:
      assert n["encoder"] > 0 and n["decoder"] > 0, (name, n)
    if name in ("mask", "source", "rec", "identity"):
      assert n["dimg"] == 0 and n["dz"] == 0, (name, n)
    if name in ("mask", "source", "rec"):
      assert n["phi"] == 0, (name, n)
    if edit == "difference" and name != "source":
      # The translation reads the estimate through a stop-gradient: only `source` trains the head.
      assert float(jnp.abs(grads["g"]["encoder"]["source"]["kernel"]).max()) == 0, name
  # The weighted total holds the edit's term at its weight.
  total = loss.generator_total(terms)
  want = sum(loss.generator_weight(k) * v for k, v in terms.items())
  chex.assert_trees_all_close(total, want)
  for name in steps.EDIT_TERMS[edit]:
    assert loss.generator_weight(name) == getattr(loss, name)


@pytest.mark.slow
@pytest.mark.parametrize("edit", ["none", "difference"])
def test_the_cycle_term_translates_back_and_trains_the_generator_only(
    setup, difference_setup, edit):
  """fesgan.cycle_weight > 0 adds L1(x, G(E(x_t), y)) (the generator's own translation of x_t
  back to y, whatever model.g_edit); it reaches the encoder and decoder and no other network; at
  weight 0 it is not computed at all."""
  loss, models, _, batch, params = setup if edit == "none" else difference_setup
  rng = jax.random.key(5)
  x, y = batch["image"], batch["label"]
  assert "cycle" not in steps.generator_terms(params, batch, rng, models=models, loss=loss)[0]
  cyc = dataclasses.replace(loss, cycle=3.0)
  terms, aux = steps.generator_terms(params, batch, rng, models=models, loss=cyc)
  apply = lambda *a, **k: models.g.apply({"params": params["g"]}, *a, **k)
  if edit == "none":
    back = apply(apply(aux["x_t"], method="encode"), jax.nn.one_hot(y, K), method="decode")
  else:
    back = apply(aux["x_t"], jax.nn.one_hot(y, K))
  chex.assert_trees_all_close(terms["cycle"], jnp.mean(jnp.abs(x - back)), atol=1e-6)
  chex.assert_trees_all_close(cyc.generator_total(terms),
                              loss.generator_total({k: v for k, v in terms.items()
                                                    if k != "cycle"}) + 3.0 * terms["cycle"],
                              rtol=1e-6)
  grads = jax.grad(lambda p: steps.generator_terms(p, batch, rng, models=models,
                                                   loss=cyc)[0]["cycle"])(params)
  chex.assert_tree_all_finite(grads)
  n = norms(grads)
  assert n["encoder"] > 0 and n["decoder"] > 0, n
  assert n["dimg"] == 0 and n["dz"] == 0 and n["phi"] == 0, n
  if edit == "difference":  # the estimate is read through a stop-gradient here too
    assert float(jnp.abs(grads["g"]["encoder"]["source"]["kernel"]).max()) == 0
