"""The recogniser's recipe (augmentation, schedule, weight decay), the validation split, and the
generator's moving average."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default
from jfesgan import augment as augment_lib
from jfesgan import stages, steps, validate
from jfesgan import state as state_lib
from jfesgan.augment import Augment
from jfesgan.data import pipeline
from jfesgan.evaluation.restored import RestoredRecogniser
from jfesgan.models import build_models


def _images(n=6, size=16, channels=1, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, size, size, channels), minval=-1, maxval=1)


def test_augment_off_is_the_identity():
  x = _images()
  np.testing.assert_array_equal(Augment()(x, jax.random.key(1)), x)


@pytest.mark.slow
def test_warp_shift_and_rotation_are_exact():
  img = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (9, 9, 2)), jnp.float32)
  shifted = augment_lib._warp(img, jnp.float32(0), jnp.float32(1), jnp.array([2.0, -3.0]))
  # Output pixel (r, c) shows input (r - 2, c + 3); beyond the border the nearest edge pixel.
  np.testing.assert_allclose(shifted[2:, :6], img[:7, 3:], atol=1e-6)
  np.testing.assert_allclose(shifted[0, :6], img[0, 3:], atol=1e-6)
  np.testing.assert_allclose(shifted[:, 8], np.asarray(img[np.clip(np.arange(9) - 2, 0, 8), 8]),
                             atol=1e-6)
  quarter = augment_lib._warp(img, jnp.float32(np.pi / 2), jnp.float32(1), jnp.zeros(2))
  np.testing.assert_allclose(quarter, np.rot90(np.asarray(img), k=1, axes=(0, 1)), atol=1e-5)


@pytest.mark.slow
def test_augmentation_stays_inside_the_image_and_varies_per_image():
  aug = Augment(rotate=15, scale=0.2, shift=0.15, contrast=0.4, brightness=0.3)
  x = _images(n=8)
  y = aug(x, jax.random.key(2))
  chex.assert_shape(y, x.shape)
  assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
  # No fill colour: a flat image stays flat (every sample comes from inside the image).
  flat = jnp.full((4, 16, 16, 1), 0.25)
  geo = Augment(rotate=30, scale=0.3, shift=0.3)
  np.testing.assert_allclose(geo(flat, jax.random.key(3)), flat, atol=1e-6)
  # Each image its own transformation; the same key, the same result.
  same = jnp.repeat(x[:1], 4, 0)
  out = geo(same, jax.random.key(4))
  assert not np.allclose(out[0], out[1])
  np.testing.assert_array_equal(out, geo(same, jax.random.key(4)))


def test_instance_noise_is_added_to_every_image_alone():
  """``noise``: Gaussian noise of that std on every pixel, drawn per image, nothing else changed;
  a section saved before the field existed reads as 0 (off)."""
  x = jnp.zeros((64, 16, 16, 1))
  y = Augment(noise=0.15)(x, jax.random.key(0))
  np.testing.assert_allclose(float(jnp.std(y)), 0.15, rtol=0.02)
  np.testing.assert_allclose(float(jnp.mean(y)), 0.0, atol=0.005)
  assert not np.allclose(y[0], y[1])
  old = default.augment(rotate=3.0)
  del old["noise"]
  assert Augment.from_config(old) == Augment(rotate=3.0)
  # Other ranges draw the same random numbers with or without noise (earlier runs reproduce).
  both, alone = Augment(contrast=0.3, noise=0.1), Augment(contrast=0.3)
  key = jax.random.key(5)
  img = _images(n=4)
  base = alone(img, key)
  np.testing.assert_allclose(both(img, key) - base,
                             0.1 * jax.random.normal(jax.random.fold_in(key, 2), img.shape),
                             atol=1e-6)


def test_augment_config_errors_are_named():
  with pytest.raises(ValueError, match="rotate"):
    Augment.from_config(default.augment(rotate=-1.0))


@pytest.mark.slow
def test_recogniser_step_augments_images_but_not_labels(tiny_config):
  """The step trains on augmented images with the batch's own labels: its loss equals the loss
  of the same network on the augmented batch, computed by hand."""
  models = build_models(tiny_config, 7, 4)
  state = state_lib.create_r_state(models, tiny_config.real.optimizer, jax.random.key(0))
  x = _images(n=8, size=32)
  batch = {"image": x, "label": jnp.arange(8) % 7}
  aug = Augment(rotate=20, shift=0.2)
  rng = jax.random.key(9)
  _, m = steps.recogniser_step(state, batch, rng, model=models.r, augment=aug)
  _, logits = models.r.apply({"params": state.params}, aug(x, rng))
  want = jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(8), batch["label"]])
  np.testing.assert_allclose(m["r/loss"], want, rtol=1e-5)
  _, plain = steps.recogniser_step(state, batch, rng, model=models.r)
  assert abs(float(plain["r/loss"]) - float(want)) > 1e-4


def optax_norm(tree):
  return float(jnp.sqrt(sum(jnp.sum(a**2) for a in jax.tree.leaves(tree))))


@pytest.mark.slow
def test_real_only_intra_class_loss_is_a_centre_loss_on_real_features(tiny_config):
  """real.intra_weight (the control row): one step of CE + w * L_intra on the real features, the
  centres the batch's class means. Oracle written apart; with no synthetic images the centres as
  constants (rdbp) and autodiff through them (plain) give the same gradient."""
  models = build_models(tiny_config, 7, 4)
  state = state_lib.create_r_state(models, tiny_config.real.optimizer, jax.random.key(0))
  x, y, w = _images(n=8, size=32), jnp.array([0, 0, 1, 1, 1, 2, 3, 3]), 0.5
  step = jax.jit(functools.partial(steps.recogniser_step, model=models.r, intra_weight=w))
  new, m = step(state, {"image": x, "label": y}, jax.random.key(3))

  def oracle(p, through_centres):
    f, logits = models.r.apply({"params": p}, x)
    ce = jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(8), y])
    onehot = jax.nn.one_hot(y, 7)
    centres = (onehot.T @ f) / jnp.maximum(onehot.sum(0), 1.0)[:, None]
    if not through_centres:
      centres = jax.lax.stop_gradient(centres)
    intra = 0.5 * jnp.sum((f - centres[y])**2) / 8
    return ce + w * intra, (ce, intra)

  (loss, (ce, intra)), grads = jax.value_and_grad(oracle, has_aux=True)(state.params, False)
  through, _ = jax.grad(oracle, has_aux=True)(state.params, True)
  chex.assert_trees_all_close(through, grads, atol=1e-5)
  np.testing.assert_allclose([m["r/loss"], m["r/ce"], m["r/intra"]], [loss, ce, intra], rtol=1e-5)
  assert float(intra) > 0
  chex.assert_trees_all_close(new.params, state.apply_gradients(grads=grads).params, atol=1e-6)
  # The centre loss reaches the trunk (the features) and not the head.
  ce_only = jax.grad(lambda p: oracle(p, False)[1][0])(state.params)
  chex.assert_trees_all_close(ce_only["head"], grads["head"], atol=1e-7)
  diff = jax.tree.map(lambda a, b: a - b, grads["trunk"], ce_only["trunk"])
  assert optax_norm(diff) > 1e-3 * optax_norm(grads["trunk"])


def test_cosine_schedule_warmup_and_weight_decay():
  sec = default.optimizer(1e-2, 0.9, schedule="cosine", warmup=10, weight_decay=0.1)
  lr = state_lib.learning_rate(sec, 100)
  assert float(lr(0)) == 0.0
  np.testing.assert_allclose(float(lr(10)), 1e-2, rtol=1e-6)
  assert float(lr(55)) < 1e-2 and abs(float(lr(100))) < 1e-9
  # Decoupled weight decay shrinks parameters even with zero gradients.
  tx = state_lib.make_optimizer(sec, 100)
  params = {"w": jnp.ones(3)}
  opt = tx.init(params)
  for _ in range(20):
    upd, opt = tx.update({"w": jnp.zeros(3)}, opt, params)
    params = jax.tree.map(lambda p, u: p + u, params, upd)
  assert float(params["w"][0]) < 1.0
  with pytest.raises(ValueError, match="schedule"):
    state_lib.learning_rate(default.optimizer(1e-3, 0.9, schedule="step"), 10)
  with pytest.raises(ValueError, match="warmup"):
    state_lib.learning_rate(default.optimizer(1e-3, 0.9, schedule="cosine", warmup=10), 10)


def _lr_at(state, count: int) -> float:
  """The step a state's optimiser takes for a unit gradient after ``count`` updates (Adam's first
  normalised step is the learning rate itself, whatever the gradient's size)."""
  params = {"w": jnp.zeros(())}
  tx = state.tx
  opt = tx.init(params)
  opt = jax.tree.map(lambda a: jnp.full_like(a, count) if a.dtype == jnp.int32 else a, opt)
  upd, _ = tx.update({"w": jnp.ones(())}, opt, params)
  return -float(upd["w"])


def test_every_stage_optimiser_takes_a_cosine_schedule_over_its_own_updates(tiny_config, tmp_path):
  """schedule='cosine' works in every optimiser section, each decaying to 0 over the updates its
  player makes: the stage's steps, g's in stage 1 every n_critic-th, the stage-1 players'
  sections again over stage 2's steps."""
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(tmp_path / "tfds")
  cfg.stages = ("phi", "fesgan", "real", "joint")
  cfg.phi.steps, cfg.fesgan.steps, cfg.fesgan.n_critic, cfg.real.steps, cfg.joint.steps = (
      6, 8, 2, 5, 3)
  for _, section in state_lib.optimizer_sections(cfg):
    section.schedule = "cosine"
  validate.validate(cfg, stages.select(cfg))
  data, _ = pipeline.train_test(cfg.data)
  models = build_models(cfg, data.num_classes, num_subjects=len(np.unique(data.subject)))
  ctx = stages.Context(config=cfg, models=models, train=data)
  done = {}
  for stage in stages.PLAN:
    done[stage.name] = stage.create(ctx, done)
  fes, joint = done["fesgan"], done["joint"]
  players = {"phi": (done["phi"], 6), "g": (fes.g, 4), "dimg": (fes.dimg, 8), "dz": (fes.dz, 8),
             "real": (done["real"], 5), "joint g": (joint.g, 3), "joint dimg": (joint.dimg, 3),
             "joint r": (joint.r, 3)}
  for name, (state, updates) in players.items():
    lr = _lr_at(state, 0)
    assert lr > 0, name
    assert 0 < _lr_at(state, updates - 1) < lr, name
    assert abs(_lr_at(state, updates)) < 1e-12, name
  # A warmup as long as a player's updates leaves nothing to decay: refused, naming the field.
  cfg.fesgan.optimizer.g.warmup = 4
  with pytest.raises(ValueError, match=r"fesgan\.optimizer\.g\.warmup.*4 updates.*'fesgan'"):
    validate.validate(cfg, stages.select(cfg))


def test_joint_and_real_recognisers_share_one_recipe():
  c = default.get_config()
  c.real.augment.rotate = 7.0
  c.joint.optimizer.weight_decay = 0.02
  assert c.joint.augment.rotate == 7.0 and c.real.optimizer.weight_decay == 0.02


def test_validation_split_never_touches_the_test_fold(tiny_config, tmp_path):
  cfg = tiny_config.data.copy_and_resolve_references()
  cfg.data_dir = str(tmp_path)
  train, test = pipeline.train_test(cfg)
  cfg.heldout = "validation"
  inner, val = pipeline.train_test(cfg)
  test_subjects = set(test.subject.tolist())
  assert not test_subjects & set(val.subject.tolist())
  assert not test_subjects & set(inner.subject.tolist())
  assert not set(inner.subject.tolist()) & set(val.subject.tolist())
  assert len(inner) + len(val) == len(train) and len(val) > 0
  # The same images: validation and inner train partition the outer training set.
  np.testing.assert_array_equal(np.sort(np.concatenate([inner.subject, val.subject])),
                                np.sort(train.subject))
  cfg.heldout = "testing"
  with pytest.raises(ValueError, match="data.heldout"):
    pipeline.train_test(cfg)


@pytest.fixture(scope="module")
def fesgan_setup(tiny_config):
  cfg = tiny_config.copy_and_resolve_references()
  cfg.fesgan.ema_decay = 0.75
  models = build_models(cfg, 7, 6)
  phi = state_lib.create_phi_state(models, cfg.phi.optimizer, jax.random.key(1))
  fes = state_lib.create_fesgan_states(models, cfg.fesgan.optimizer, jax.random.key(2), phi)
  x = _images(n=8, size=32, seed=3)
  batch = {"image": x, "label": jnp.arange(8) % 7, "subject": jnp.arange(8) % 6}
  return cfg, models, fes, batch


def _jit_fesgan_step(models, loss, update_g=True):
  return jax.jit(functools.partial(steps.fesgan_step, models=models, loss=loss, update_g=update_g))


@pytest.mark.slow
def test_ema_generator_is_the_one_that_samples(fesgan_setup):
  cfg, models, fes, batch = fesgan_setup
  loss = steps.FesganLoss.from_config(cfg.fesgan)
  step = _jit_fesgan_step(models, loss)
  new, _ = step(fes, batch, jax.random.key(4))
  # The first update (g.step 1): decay min(0.75, 2 / 11), ramped up from the start.
  d = 2.0 / 11.0
  want = jax.tree.map(lambda a, p: d * a + (1 - d) * p, fes.g_ema, new.g.params)
  chex.assert_trees_all_close(new.g_ema, want, rtol=1e-6, atol=1e-7)
  assert not np.allclose(jax.tree.leaves(new.g_ema)[0], jax.tree.leaves(new.g.params)[0])
  # Later updates use the configured decay.
  later, _ = step(new.replace(g=new.g.replace(step=jax.numpy.asarray(100, new.g.step.dtype))),
                  batch, jax.random.key(5))
  want = jax.tree.map(lambda a, p: 0.75 * a + 0.25 * p, new.g_ema, later.g.params)
  chex.assert_trees_all_close(later.g_ema, want, rtol=1e-6, atol=1e-7)
  # Without a generator update (n_critic), the average stays.
  same, _ = _jit_fesgan_step(models, loss, update_g=False)(fes, batch, jax.random.key(4))
  chex.assert_trees_all_equal(same.g_ema, fes.g_ema)
  # The average samples (grids, synthesis scores) and starts stage 2.
  assert stages.FESGAN.generator(new) is new.g_ema
  r_state = state_lib.create_r_state(models, cfg.real.optimizer, jax.random.key(5))
  assert stages.synthesis_inputs({"fesgan": new, "real": r_state})["g_params"] is new.g_ema
  joint = state_lib.create_joint_states(models, cfg, jax.random.key(6), new)
  chex.assert_trees_all_equal(joint.g.params, new.g_ema)
  assert stages.JOINT.generator(joint) is joint.g_ema


def test_fresh_states_hold_no_buffer_twice(fesgan_setup):
  """The steps donate their input states: a buffer held twice (g and g_ema) cannot be donated."""
  cfg, models, fes, _ = fesgan_setup
  joint = state_lib.create_joint_states(models, cfg, jax.random.key(6), fes)
  for states in (fes, joint):
    leaves = [x for x in jax.tree.leaves(states) if isinstance(x, jax.Array)]
    assert len({id(x) for x in leaves}) == len(leaves)
  # ... and a donating jitted step on one device runs on them.
  step = jax.jit(lambda s: s.replace(g_ema=jax.tree.map(lambda a: a * 0.5, s.g_ema)),
                 donate_argnums=0)
  jax.block_until_ready(step(jax.tree.map(jnp.copy, joint)))


@pytest.mark.slow
def test_ema_decay_zero_is_the_generator_itself(fesgan_setup):
  cfg, models, fes, batch = fesgan_setup
  loss = steps.FesganLoss.from_config(_with(cfg.fesgan, ema_decay=0.0))
  new, _ = _jit_fesgan_step(models, loss)(fes, batch, jax.random.key(4))
  chex.assert_trees_all_equal(new.g_ema, new.g.params)


def _with(section, **fields):
  out = ml_collections.ConfigDict(section.to_dict())
  for k, v in fields.items():
    out[k] = v
  return out


@pytest.mark.slow
def test_recogniser_starts_from_a_pretrained_run(tiny_config, fesgan_setup, tmp_path):
  """``real.init_from``: R's trunk and the head rows of the classes both runs know come from a
  finished real-only run on other data; other rows keep their fresh values; the joint R (tied
  field) starts alike; a mismatched source or a missing run is an error naming the field."""
  from jfesgan import train  # pylint: disable=g-import-not-at-top
  src_cfg = tiny_config.copy_and_resolve_references()
  src_cfg.data.data_dir = str(tmp_path / "tfds")
  src_cfg.data.data_seed = 1  # other faces
  src_cfg.stages = ("real",)
  source = str(tmp_path / "pretrain")
  train.train_and_evaluate(src_cfg, source)
  src_params = jax.device_get(RestoredRecogniser.load(source, "real").params)
  src_names = RestoredRecogniser.load(source, "real").class_names

  cfg, models, fes, _ = fesgan_setup
  # This database: the source's classes reversed, one spelled differently, one it does not know.
  names = [*reversed(src_names[1:]), "boredom"]
  names[0] = {"happy": "happiness", "sadness": "sad", "anger": "angry"}.get(names[0], names[0])
  fresh = state_lib.create_r_state(models, cfg.real.optimizer, jax.random.key(5)).params
  r = state_lib.create_r_state(models, cfg.real.optimizer, jax.random.key(5),
                               init_from=source, class_names=names).params
  chex.assert_trees_all_equal(r["trunk"], src_params["trunk"])
  for k in range(len(names) - 1):  # ours k is theirs len - 1 - k
    np.testing.assert_array_equal(r["head"]["kernel"][:, k],
                                  src_params["head"]["kernel"][:, len(src_names) - 1 - k])
    np.testing.assert_array_equal(r["head"]["bias"][k],
                                  src_params["head"]["bias"][len(src_names) - 1 - k])
  np.testing.assert_array_equal(r["head"]["kernel"][:, -1], fresh["head"]["kernel"][:, -1])
  assert not np.allclose(r["trunk"]["Dense_0"]["kernel"], fresh["trunk"]["Dense_0"]["kernel"])

  joint_cfg = cfg.copy_and_resolve_references()
  with_ref = default.get_config()
  with_ref.real.init_from = source  # the joint field follows the real one
  joint_cfg.joint.init_from = with_ref.joint.init_from
  joint = state_lib.create_joint_states(models, joint_cfg, jax.random.key(5), fes,
                                        class_names=names)
  chex.assert_trees_all_equal(joint.r.params, r)
  joint_cfg.joint.init_r_from_phi = True
  with pytest.raises(ValueError, match="init_r_from_phi both set"):
    state_lib.create_joint_states(models, joint_cfg, jax.random.key(5), fes, class_names=names)

  wide = tiny_config.copy_and_resolve_references()
  wide.model.width = 16
  with pytest.raises(ValueError,
                     match=r"real.init_from=.*trunk/Conv_0/.* has shape \(8,.*\) there"):
    state_lib.create_r_state(build_models(wide, 7, 6), cfg.real.optimizer, jax.random.key(5),
                             init_from=source, class_names=names)
  residual = tiny_config.copy_and_resolve_references()
  residual.model.r_arch = "residual"  # another family: other layers, named
  with pytest.raises(ValueError, match=r"real.init_from=.*its recogniser's trunk has layers "
                     r"\['Conv_0/bias'.*this one \[.*'embed/bias'.*\(model.r_arch or "
                     r"model.num_down differ\?\)"):
    state_lib.create_r_state(build_models(residual, 7, 6), cfg.real.optimizer, jax.random.key(5),
                             init_from=source, class_names=names)
  with pytest.raises(ValueError, match=r"real.init_from=.*nowhere.*not the workdir"):
    state_lib.create_r_state(models, cfg.real.optimizer, jax.random.key(5),
                             init_from=str(tmp_path / "nowhere"), class_names=names)
  with pytest.raises(ValueError, match="none of its classes"):
    state_lib.create_r_state(models, cfg.real.optimizer, jax.random.key(5), init_from=source,
                             class_names=["boredom", "awe"])

  # A finished run that started from ``source``, run again: its stages are restored into the
  # abstract state (traced without reading the source: orbax cannot restore under a trace) and it
  # comes back whole, not retrained.
  run_cfg = src_cfg.copy_and_resolve_references()
  run_cfg.data.data_seed = tiny_config.data.data_seed
  run_cfg.real.init_from = source
  run = str(tmp_path / "run")
  train.train_and_evaluate(run_cfg, run)
  first = jax.device_get(RestoredRecogniser.load(run, "real").params)
  assert not np.allclose(first["trunk"]["Dense_0"]["kernel"],
                         src_params["trunk"]["Dense_0"]["kernel"])  # trained on from the source
  train.train_and_evaluate(run_cfg, run)
  chex.assert_trees_all_equal(jax.device_get(RestoredRecogniser.load(run, "real").params), first)
