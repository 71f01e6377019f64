"""Stage 2: R's losses reach the generator through the synthetic images, and only as intended."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jfesgan import parallel, steps
from jfesgan import state as state_lib
from jfesgan.models import build_models

K, SUBJECTS, N = 7, 6, 8


def _cfg(tiny_config, **joint):
  cfg = tiny_config.copy_and_resolve_references()
  for k, v in joint.items():
    cfg.joint[k] = v
  return cfg


def _losses(cfg):
  return dict(fesgan=steps.FesganLoss.from_config(cfg.fesgan),
              joint=steps.JointLoss.from_config(cfg.joint))


def _states(models, cfg, rng):
  phi = state_lib.create_phi_state(models, cfg.phi.optimizer, jax.random.fold_in(rng, 1))
  fes = state_lib.create_fesgan_states(models, cfg.fesgan.optimizer, jax.random.fold_in(rng, 2),
                                       phi)
  return phi, state_lib.create_joint_states(models, cfg, jax.random.fold_in(rng, 3), fes)


@pytest.fixture(scope="module")
def setup(tiny_config):
  models = build_models(tiny_config, K, SUBJECTS)
  rng = jax.random.key(0)
  _, joint = _states(models, tiny_config, rng)
  x = jax.random.uniform(jax.random.fold_in(rng, 4), (N, 32, 32, 1), minval=-1, maxval=1)
  batch = {"image": x, "label": jnp.arange(N) % 5, "subject": jnp.arange(N) % SUBJECTS}
  params = {k: getattr(joint, k).params for k in ("g", "dimg", "dz", "phi", "r")}
  # Distinct running centres so that classes 5 and 6 (absent from the real batch) have targets.
  centres = jax.random.normal(jax.random.fold_in(rng, 5), joint.r.centres.shape)
  return models, joint.replace(r=joint.r.replace(centres=centres)), batch, params


def _norm(tree):
  return float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree))))


def _grad_norms(models, joint, batch, params, cfg, *terms):
  """{term: gradient norms per network} of each stage-2 term, in one jitted program (eager
  dispatch compiles every op apart)."""
  loss = _losses(cfg)["joint"]

  def term_grads(p):
    value = lambda q, t: steps.joint_terms(q, joint.r.centres, batch, jax.random.key(7),
                                           models=models, joint=loss)[0][t]
    return {t: jax.grad(value)(p, t) for t in terms}

  out = {}
  for term, grads in jax.jit(term_grads)(params).items():
    chex.assert_tree_all_finite(grads)
    out[term] = {"encoder": _norm(grads["g"]["encoder"]), "decoder": _norm(grads["g"]["decoder"]),
                 **{k: _norm(grads[k]) for k in ("r", "dimg", "dz", "phi")}}
  return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rdbp", "plain"])
def test_recogniser_losses_reach_encoder_and_decoder(setup, tiny_config, mode):
  models, joint, batch, params = setup
  cfg = _cfg(tiny_config, intra_mode=mode, synthetic=("prior", "translation"))
  norms = _grad_norms(models, joint, batch, params, cfg, "ce_syn", "intra", "ce_real")
  for term in ("ce_syn", "intra"):
    n = norms[term]
    assert n["encoder"] > 0 and n["decoder"] > 0 and n["r"] > 0, (term, n)
    assert n["dimg"] == 0 and n["dz"] == 0 and n["phi"] == 0, (term, n)
  n = norms["ce_real"]
  assert n["r"] > 0 and n["encoder"] == n["decoder"] == 0, n


@pytest.mark.slow
def test_new_identities_reach_the_decoder_only(setup, tiny_config):
  """x_p = G(z_p, c_p) does not pass through E: with prior images only, R's synthetic loss
  trains the decoder and not the encoder."""
  models, joint, batch, params = setup
  cfg = _cfg(tiny_config, synthetic=("prior",))
  n = _grad_norms(models, joint, batch, params, cfg, "ce_syn")["ce_syn"]
  assert n["decoder"] > 0 and n["encoder"] == 0, n


def test_intra_none_is_inert(setup, tiny_config):
  models, joint, batch, params = setup
  cfg = _cfg(tiny_config, intra_mode="none")
  n = _grad_norms(models, joint, batch, params, cfg, "intra")["intra"]
  assert all(v == 0 for v in n.values()), n


def _changed(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
def test_joint_update_trains_r_and_g_only_and_updates_centres(setup, tiny_config):
  models, joint, batch, _ = setup
  cfg = _cfg(tiny_config, train_discriminators=False)
  step = lambda c: jax.jit(functools.partial(steps.joint_step, models=models, **_losses(c)))
  new, metrics = step(cfg)(joint, batch, jax.random.key(3))
  chex.assert_tree_all_finite(metrics)
  assert _changed(new.r.params, joint.r.params)
  assert _changed(new.g.params["encoder"], joint.g.params["encoder"])
  assert _changed(new.g.params["decoder"], joint.g.params["decoder"])
  for name in ("dimg", "dz", "phi"):
    assert not _changed(getattr(new, name).params, getattr(joint, name).params), name
  # Centres move for classes with real samples (labels 0-4) and stay for the absent 5 and 6.
  assert not np.allclose(new.r.centres[:5], joint.r.centres[:5])
  np.testing.assert_array_equal(new.r.centres[5:], joint.r.centres[5:])
  assert int(new.step) == int(joint.step) + 1
  with_d, m = step(_cfg(tiny_config))(joint, batch, jax.random.key(3))
  assert _changed(with_d.dimg.params, joint.dimg.params) and "dimg/loss" in m


@pytest.mark.slow
def test_generator_gets_beta_weighted_recogniser_gradient(setup, tiny_config):
  """With the stage-1 terms off and beta = 0 the generator does not move; with beta > 0 it does."""
  models, joint, batch, _ = setup
  for beta, moves in ((0.0, False), (1.0, True)):
    cfg = _cfg(tiny_config, beta=beta, generator_terms=False, train_discriminators=False)
    new, _ = steps.joint_update(joint, batch, jax.random.key(4), models=models, **_losses(cfg))
    assert _changed(new.g.params, joint.g.params) == moves, beta


def test_synthetic_batch_mix_and_errors():
  syn = {"x_p": jnp.zeros((4, 2)), "c_p": jnp.zeros(4, jnp.int32),
         "x_t": jnp.ones((4, 2)), "c_t": jnp.ones(4, jnp.int32)}
  x, c = steps.synthetic_batch(syn, ("prior", "translation"), 1.0, 4)
  assert x.shape == (4, 2) and c.tolist() == [0, 0, 1, 1]
  x, c = steps.synthetic_batch(syn, ("translation",), 0.5, 4)
  assert c.tolist() == [1, 1]
  with pytest.raises(ValueError, match="joint.synthetic"):
    steps.synthetic_batch(syn, ("noise",), 1.0, 4)
  with pytest.raises(ValueError, match="syn_ratio"):
    steps.synthetic_batch(syn, ("prior",), 3.0, 4)


def test_r_can_start_from_phi(tiny_config):
  models = build_models(tiny_config, K, SUBJECTS)
  phi, joint = _states(models, _cfg(tiny_config, init_r_from_phi=True), jax.random.key(1))
  chex.assert_trees_all_equal(joint.r.params["trunk"], phi.params["trunk"])


@pytest.mark.slow
def test_sharded_joint_step_equals_single_device(tiny_config):
  """A joint step on 4 devices updates every network as on one device; a second call runs without
  retracing.  Compared after the first step, leaf by leaf as the update each network made: the
  generator's identity term is an L1 distance between unit embeddings, whose gradient is the sign
  of each difference, and where a difference is as small as rounding its sign can differ between
  the two programs (seen at the suite's LLVM level 0: 1 % of that term's gradient, 0.5 % of the
  generator's update), after which the two trajectories part.  A wrong shard or a missed
  reduction changes whole updates by a large fraction (the mean over 1 of 4 shards: ~50 %)."""
  cfg = _cfg(tiny_config)
  for section in (*(cfg.fesgan.optimizer[p] for p in ("g", "dimg", "dz")), cfg.joint.optimizer):
    section.name, section.lr = "sgd", 0.1
  models = build_models(cfg, K, SUBJECTS)
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(-1, 1, (N, 32, 32, 1)).astype(np.float32),
           "label": (np.arange(N) % K).astype(np.int32), "subject": np.zeros(N, np.int32)}
  nets = lambda s: {k: getattr(s, k).params for k in ("g", "dimg", "dz", "r")}
  start = jax.device_get(nets(_states(models, cfg, jax.random.key(1))[1]))
  out = []
  for n in (1, 4):
    chex.clear_trace_counter()
    mesh = parallel.make_mesh(n)
    joint = parallel.replicate(_states(models, cfg, jax.random.key(1))[1], mesh)

    @chex.assert_max_traces(n=1)  # two calls below: one trace, no retracing
    def traced(s, b, r):
      return steps.joint_step(s, b, r, models=models, **_losses(cfg))

    step = parallel.jit_step(traced, mesh)
    for i in range(2):
      joint, metrics = step(joint, parallel.shard_batch(batch, mesh), jax.random.key(5 + i))
      if i == 0:
        first = jax.device_get((nets(joint), joint.r.centres, metrics))
    chex.assert_tree_all_finite(jax.device_get(nets(joint)))
    out.append(first)
  (p1, c1, m1), (p4, c4, m4) = out
  moved = jax.tree.map(lambda a, b, s: float(np.linalg.norm(a - b) / np.linalg.norm(a - s)),
                       p1, p4, start)
  worst = max(jax.tree.leaves(moved))
  assert worst < 0.02, {k: max(jax.tree.leaves(v)) for k, v in moved.items()}
  assert min(jax.tree.leaves(jax.tree.map(lambda a, s: float(np.abs(a - s).max()), p1, start))) > 0
  chex.assert_trees_all_close(c1, c4, atol=1e-5, rtol=1e-4)
  chex.assert_trees_all_close(m1, m4, atol=1e-4, rtol=1e-3)
