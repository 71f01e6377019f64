"""Every network gives the documented shapes and ranges at 32, 48, 64 and 128 px."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jfesgan import models as M
from jfesgan.models import build_models


@pytest.mark.slow
@pytest.mark.parametrize("size,channels,num_down", [(32, 1, 3), (48, 1, 3), (64, 3, 3), (128, 3, 4)])
def test_shapes_and_ranges(size, channels, num_down):
  key = jax.random.key(size)
  n, k, d = 2, 7, 16
  common = dict(width=4, max_width=16, num_down=num_down)
  x = jax.random.uniform(key, (n, size, size, channels), minval=-1, maxval=1)
  c = jax.nn.one_hot(jnp.array([0, 6]), k)

  g = M.Generator(image_size=size, channels=channels, latent_dim=d, **common)
  gp = g.init(key, x, c)["params"]
  assert set(gp) == {"encoder", "decoder"}
  z = g.apply({"params": gp}, x, method="encode")
  chex.assert_shape(z, (n, d))
  assert float(jnp.max(jnp.abs(z))) < 1.0
  out = g.apply({"params": gp}, x, c)
  chex.assert_shape(out, (n, size, size, channels))
  assert float(jnp.max(jnp.abs(out))) <= 1.0
  # A continuous expression code (interpolation) is accepted too.
  chex.assert_shape(g.apply({"params": gp}, z, 0.5 * c + 0.5 * c[::-1], method="decode"),
                    (n, size, size, channels))

  dimg = M.ImageDiscriminator(num_classes=k, **common)
  score, logits = dimg.apply(dimg.init(key, x), x)
  chex.assert_shape([score, logits], [(n,), (n, k)])

  dz = M.LatentDiscriminator(hidden=(8,))
  chex.assert_shape(dz.apply(dz.init(key, z), z), (n,))

  phi = M.IdentityNet(num_subjects=5, embed_dim=8, **common)
  e, subj_logits = phi.apply(phi.init(key, x), x)
  chex.assert_shape([e, subj_logits], [(n, 8), (n, 5)])
  chex.assert_trees_all_close(jnp.linalg.norm(e, axis=-1), jnp.ones(n), atol=1e-4)

  r = M.Recogniser(num_classes=k, embed_dim=8, **common)
  f, r_logits = r.apply(r.init(key, x), x)
  chex.assert_shape([f, r_logits], [(n, 8), (n, k)])
  chex.assert_tree_all_finite([out, score, logits, e, f, r_logits])


def _generator_beside_default(tiny_config, **model_fields):
  """The models of ``tiny_config`` with ``model_fields`` changed, checked to differ from the
  default ones in the generator alone; an image batch, codes and both generators' parameters."""
  base = M.build_models(tiny_config, num_classes=7, num_subjects=6)
  cfg = tiny_config.copy_and_resolve_references()
  for k, v in model_fields.items():
    cfg.model[k] = v
  models = M.build_models(cfg, num_classes=7, num_subjects=6)
  for name in ("dimg", "dz", "phi", "r"):
    assert getattr(models, name) == getattr(base, name), name
  size, ch = cfg.data.image_size, cfg.data.channels
  x = jax.random.uniform(jax.random.key(0), (2, size, size, ch), minval=-1, maxval=1)
  c = jax.nn.one_hot(jnp.array([1, 4]), 7)
  p0 = jax.jit(base.g.init)(jax.random.key(1), x, c)["params"]  # jitted: eager dispatch would
  p1 = jax.jit(models.g.init)(jax.random.key(1), x, c)["params"]  # compile every op apart
  return cfg, models, x, c, p0, p1


@pytest.mark.slow
def test_generator_capacity_options_change_the_generator_alone(tiny_config):
  """model.g_width and model.g_depth widen and deepen E and G (a FiLM-modulated 3x3 convolution
  per level in G, a 3x3 convolution per level in E), leave every other network as it is, and the
  reconstruction loss reaches every added parameter."""
  cfg, deep, x, c, p0, p1 = _generator_beside_default(
      tiny_config, g_width=2 * tiny_config.model.width, g_depth=1)
  levels = cfg.model.num_down
  added = {f"level{i}_conv0" for i in range(levels)}
  assert added <= set(p1["encoder"]) and not added & set(p0["encoder"])
  assert added | {f"level{i}_norm0" for i in range(levels)} | {
      f"film{i}_0" for i in range(levels)} <= set(p1["decoder"])
  first = p1["encoder"]["Conv_0"]["kernel"]
  assert first.shape[-1] == 2 * p0["encoder"]["Conv_0"]["kernel"].shape[-1]
  out = jax.jit(deep.g.apply)({"params": p1}, x, c)
  chex.assert_shape(out, x.shape)
  assert float(jnp.max(jnp.abs(out))) <= 1.0
  loss = lambda p: jnp.mean(jnp.abs(deep.g.apply({"params": p}, x, c) - x))
  grads = jax.jit(jax.grad(loss))(p1)
  for part in ("encoder", "decoder"):
    for name in p1[part]:
      if name.startswith("level") or name.startswith("film"):
        leaves = jax.tree.leaves(grads[part][name])
        # FiLM starts at zero (the identity modulation) and gets a gradient all the same.
        assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves), (part, name)


@pytest.mark.slow
def test_resize_upsampling_changes_the_decoder_alone(tiny_config):
  """model.g_upsample='resize': every upsampling of G is a 3x3 resize-convolution (its parameters
  the 3x3 kernels), the encoder and every other network are unchanged, the output is an image and
  the reconstruction loss reaches every decoder parameter."""
  cfg, resized, x, c, p0, p1 = _generator_beside_default(tiny_config, g_upsample="resize")
  chex.assert_trees_all_equal_shapes(p1["encoder"], p0["encoder"])
  ups = [k for k in p1["decoder"] if k.startswith("ResizeConv2x")]
  assert len(ups) == cfg.model.num_down and not any("ConvTranspose" in k for k in p1["decoder"])
  assert all(p1["decoder"][k]["kernel"].shape[:2] == (3, 3) for k in ups)
  out = jax.jit(resized.g.apply)({"params": p1}, x, c)
  chex.assert_shape(out, x.shape)
  assert float(jnp.max(jnp.abs(out))) <= 1.0
  loss = lambda p: jnp.mean(jnp.abs(resized.g.apply({"params": p}, x, c) - x))
  grads = jax.jit(jax.grad(loss))(p1)
  for k in ups:
    assert float(jnp.max(jnp.abs(grads["decoder"][k]["kernel"]))) > 0, k


@pytest.mark.slow
def test_blur_upsampling_keeps_the_transposed_kernels_and_blurs_each(tiny_config):
  """model.g_upsample='blur' (the default): the same parameters as 'transpose' (4x4 transposed
  kernels), each upsampling's output blurred, so the same parameters draw an image with no
  checkerboard; the reconstruction loss reaches every decoder kernel."""
  transposed = tiny_config.copy_and_resolve_references()
  transposed.model.g_upsample = "transpose"
  cfg, blurred, x, c, p0, p1 = _generator_beside_default(transposed, g_upsample="blur")
  chex.assert_trees_all_equal_shapes(p1["encoder"], p0["encoder"])
  ups = [k for k in p1["decoder"] if k.startswith("BlurConvTranspose2x")]
  assert len(ups) == cfg.model.num_down
  assert all(p1["decoder"][k]["kernel"].shape[:2] == (4, 4) for k in ups)
  plain = M.build_models(transposed, num_classes=7, num_subjects=6).g
  renamed = {"encoder": p1["encoder"], "decoder": {
      k.replace("BlurConvTranspose2x", "ConvTranspose2x"): v for k, v in p1["decoder"].items()}}
  out = jax.jit(blurred.g.apply)({"params": p1}, x, c)
  unblurred = jax.jit(plain.apply)({"params": renamed}, x, c)
  chex.assert_shape(out, x.shape)
  assert float(jnp.max(jnp.abs(out))) <= 1.0
  assert float(jnp.max(jnp.abs(out - unblurred))) > 1e-3  # the same weights, blurred

  def alternation(img):  # mean |pixel - mean of its 4 neighbours| on the interior
    a = np.asarray(img)[:, 1:-1, 1:-1]
    b = np.asarray(img)
    around = (b[:, :-2, 1:-1] + b[:, 2:, 1:-1] + b[:, 1:-1, :-2] + b[:, 1:-1, 2:]) / 4
    return float(np.mean(np.abs(a - around)))

  assert alternation(out) < alternation(unblurred)
  loss = lambda p: jnp.mean(jnp.abs(blurred.g.apply({"params": p}, x, c) - x))
  grads = jax.jit(jax.grad(loss))(p1)
  for k in ups:
    assert float(jnp.max(jnp.abs(grads["decoder"][k]["kernel"]))) > 0, k


@pytest.mark.slow
def test_recogniser_trunk_matches_phi_trunk():
  """R can start from Phi's trunk: the two trunks have the same parameter structure."""
  x = jnp.zeros((1, 32, 32, 1))
  phi = M.IdentityNet(num_subjects=3, embed_dim=8, width=4, max_width=8, num_down=2)
  r = M.Recogniser(num_classes=7, embed_dim=8, width=4, max_width=8, num_down=2)
  pt = phi.init(jax.random.key(0), x)["params"]["trunk"]
  rt = r.init(jax.random.key(0), x)["params"]["trunk"]
  chex.assert_trees_all_equal_shapes(pt, rt)


def test_residual_recogniser_is_another_family_that_learns():
  """model.r_arch="residual": R of another architecture family (residual blocks, global
  pooling) with the same outputs; every parameter is trained from the first updates
  (the zero-initialised branch ends included), and it fits a small batch."""
  x = jax.random.normal(jax.random.key(1), (14, 32, 32, 1))
  y = jnp.arange(14) % 7
  r = M.Recogniser(num_classes=7, embed_dim=8, width=8, max_width=16, num_down=2, arch="residual")
  params = r.init(jax.random.key(0), x)["params"]
  f, logits = r.apply({"params": params}, x)
  chex.assert_shape((f, logits), ((14, 8), (14, 7)))
  layers = set(params["trunk"])
  assert layers == {"stem", "level0_block0", "level0_block1", "level1_block0", "level1_block1", "embed"}
  assert "project" in params["trunk"]["level0_block0"] and "project" not in params["trunk"][
      "level0_block1"]
  conv_trunk = M.Recogniser(num_classes=7, embed_dim=8, width=8, max_width=16, num_down=2)
  assert not layers & set(conv_trunk.init(jax.random.key(0), x)["params"]["trunk"])
  # The resolution rule is ConvTrunk's, named the same way.
  with pytest.raises(ValueError, match="image_size=30"):
    r.init(jax.random.key(0), jnp.zeros((1, 30, 30, 1)))

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(r.apply({"params": p}, x)[1], y).mean()

  tx = optax.adam(1e-2)

  @jax.jit
  def step(p, opt):
    updates, opt = tx.update(jax.grad(loss)(p), opt)
    return optax.apply_updates(p, updates), opt

  opt = tx.init(params)
  start = params
  for _ in range(100):
    params, opt = step(params, opt)
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), params, start)
  assert min(jax.tree.leaves(moved)) > 0, moved
  assert float(loss(params)) < 0.05 * float(loss(start))
  pred = r.apply({"params": params}, x)[1].argmax(-1)
  np.testing.assert_array_equal(pred, y)
  with pytest.raises(ValueError, match="model.r_arch='vit' must be one of"):
    M.Recogniser(num_classes=7, arch="vit").init(jax.random.key(0), x)


def test_build_models_takes_r_arch_and_refuses_phi_trunk_for_residual(tiny_config):
  cfg = tiny_config.copy_and_resolve_references()
  assert M.build_models(cfg, 7, 6).r.arch == "trunk"
  cfg.model.r_arch = "residual"
  assert M.build_models(cfg, 7, 6).r.arch == "residual"
  problems = []
  cfg.joint.init_r_from_phi = True
  M.check_config(cfg, lambda ok, field, value, rule: problems.append(field) if not ok else None)
  assert problems == ["joint.init_r_from_phi"]
  # The residual judge's config is the trunk judge's recipe with the other family, and valid.
  from configs import judge_fer2013, judge_fer2013_residual
  from jfesgan import stages, validate
  want = judge_fer2013.get_config()
  want.model.r_arch = "residual"
  got = judge_fer2013_residual.get_config()
  assert got.to_dict() == want.to_dict()
  assert validate.problems(got, stages.select(got)) == []


def test_bad_resolution_is_named():
  g = M.Generator(image_size=36, channels=1, latent_dim=4, width=4, max_width=8, num_down=3)
  with pytest.raises(ValueError, match="image_size=36"):
    g.init(jax.random.key(0), jnp.zeros((1, 36, 36, 1)), jnp.zeros((1, 7)))


def test_build_models_from_config(tiny_config):
  ms = M.build_models(tiny_config, num_classes=7, num_subjects=6)
  assert ms.phi.num_subjects == 6 and ms.dimg.num_classes == 7
  assert ms.latent_dim == tiny_config.model.latent_dim


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_parameters_and_outputs(tiny_config):
  """config.model.dtype='bfloat16': convolutions and dense layers run in bfloat16, while the
  parameters, the optimiser's updates and every network output stay float32, and a stage-1 step
  trains with finite values."""
  from jfesgan import state as state_lib  # pylint: disable=g-import-not-at-top
  from jfesgan import steps
  cfg = tiny_config.copy_and_resolve_references()
  cfg.model.dtype = "bfloat16"
  # XLA:CPU emulates bf16 and compiles it slowly: the smallest networks that still have every
  # kind of layer (stride-2 convolutions, transposed convolutions, FiLM, GroupNorm, dense).
  cfg.data.image_size, cfg.model.num_down, cfg.model.width, cfg.model.max_width = 16, 2, 4, 8
  models = build_models(cfg, 7, 6)
  phi = state_lib.create_phi_state(models, cfg.phi.optimizer, jax.random.key(0))
  states = state_lib.create_fesgan_states(models, cfg.fesgan.optimizer, jax.random.key(1), phi)
  x = jax.random.uniform(jax.random.key(2), (8, 16, 16, 1), minval=-1, maxval=1)
  z, c = jnp.zeros((8, cfg.model.latent_dim)), jax.nn.one_hot(jnp.arange(8) % 7, 7)
  jaxpr = str(jax.make_jaxpr(lambda p: models.g.apply({"params": p}, z, c, method="decode"))(
      states.g.params))
  assert "conv_general_dilated" in jaxpr and "bf16[8,16,16" in jaxpr
  outputs = jax.jit(lambda g, d, p: [models.g.apply({"params": g}, z, c, method="decode"),
                                      *models.dimg.apply({"params": d}, x),
                                      models.phi.apply({"params": p}, x, method="embed")])(
                                          states.g.params, states.dimg.params, phi.params)
  assert all(o.dtype == jnp.float32 for o in outputs)
  batch = {"image": x, "label": jnp.arange(8) % 7, "subject": jnp.arange(8) % 6}
  # What is checked is where bf16 flows, not kernels: LLVM's level 0 halves the compile.
  new, metrics = jax.jit(lambda s: steps.fesgan_step(
      s, batch, jax.random.key(3), models=models, loss=steps.FesganLoss.from_config(cfg.fesgan)),
                         compiler_options={"xla_backend_optimization_level": 0})(states)
  chex.assert_tree_all_finite(metrics)
  for leaf in jax.tree.leaves(new.g.params) + jax.tree.leaves(new.dimg.params):
    assert leaf.dtype == jnp.float32
  assert not np.allclose(new.g.params["decoder"]["Dense_0"]["kernel"],
                         states.g.params["decoder"]["Dense_0"]["kernel"])


def test_unknown_dtype_is_named(tiny_config):
  cfg = tiny_config.copy_and_resolve_references()
  cfg.model.dtype = "float16"
  with pytest.raises(ValueError, match=r"config.model.dtype='float16' must be one of"):
    build_models(cfg, 7, 6)


@pytest.mark.slow
def test_initialisers_compiled_for_speed_give_the_default_bits():
  """On CPU ``state._init`` compiles the initialisers at LLVM level 2 (several times faster than
  the default): every parameter is the same bits as the default compilation (level 3) gives.
  The reference names level 3 itself: the suite's ``XLA_FLAGS`` set level 0 (conftest.py), whose
  initialisers round differently."""
  from jfesgan import state  # pylint: disable=g-import-not-at-top
  x = jnp.zeros((1, 16, 16, 1))
  common = dict(width=4, max_width=8, num_down=2)
  nets = [(M.IdentityNet(num_subjects=5, embed_dim=8, **common), (x,)),
          (M.LatentDiscriminator(hidden=(8,)), (jnp.zeros((1, 8)),))]
  default = {"xla_backend_optimization_level": 3}
  for net, args in nets:
    key = jax.random.key(3)
    chex.assert_trees_all_equal(state._init(net, key, *args),  # pylint: disable=protected-access
                                jax.jit(net.init, compiler_options=default)(key, *args)["params"])


@pytest.mark.parametrize("edit", ["mask", "difference"])
def test_restored_editing_generator_translates_as_it_trained(edit):
  """A restored generator's translations are what training scored: with ``model.g_edit="mask"``
  the drawing blended into the input through the decoder's mask, with ``"difference"`` the input
  plus the drawn change from its estimated expression; not the bare drawing."""
  from jfesgan.data import faces
  from jfesgan.evaluation.restored import RestoredGenerator
  from jfesgan.models.generator import blend, shift
  g = M.Generator(image_size=16, channels=1, latent_dim=8, width=8, max_width=16, num_down=2,
                  edit=edit, num_classes=3)
  x = jax.random.uniform(jax.random.key(1), (3, 16, 16, 1), minval=-1.0, maxval=1.0)
  c = jax.nn.one_hot(jnp.array([0, 1, 2]), 3)
  params = g.init(jax.random.key(0), x, c)["params"]
  gen = RestoredGenerator(workdir="w", stage="fesgan", class_names=("a", "b", "c"), model=g,
                          params=params, image_size=16, channels=1,
                          crop=faces.CropSpec(16, 1, "none", 0.0), latent_dim=8)
  apply = lambda *a, **k: g.apply({"params": params}, *a, **k)
  z, source = apply(x, method="encode_source")
  drawing, mask = apply(z, c, method="draw")
  if edit == "mask":
    want = blend(x, drawing, mask)
  else:
    want = shift(x, drawing, apply(z, jax.nn.softmax(source), method="decode"))
  np.testing.assert_allclose(gen.translate(np.asarray(x), np.asarray(c)), want, atol=1e-6)
  assert not np.allclose(gen.translate(np.asarray(x), np.asarray(c)), drawing, atol=1e-3)


def test_legacy_and_unknown_edit_modes():
  """Runs written when ``model.g_edit`` was a switch still build; an unknown mode is refused by
  name."""
  from jfesgan.models import edit_mode
  assert (edit_mode(True), edit_mode(False), edit_mode("difference")) == ("mask", "none",
                                                                         "difference")
  g = M.Generator(image_size=16, channels=1, latent_dim=8, width=8, max_width=16, num_down=2,
                  edit="blend")
  with pytest.raises(ValueError, match="model.g_edit='blend' must be one of"):
    g.init(jax.random.key(0), jnp.zeros((1, 16, 16, 1)), jnp.zeros((1, 7)))
