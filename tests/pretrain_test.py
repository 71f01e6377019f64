"""Stage 1 pre-trained on another collection: label-free stage 1 (``fesgan.expression_labels``)
and a stage 1 started from a finished one (``fesgan.init_from``)."""

import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jfesgan import stages, steps, validate
from jfesgan import state as state_lib
from jfesgan.models import build_models
from jfesgan.run import workdir as workdir_lib

K, SUBJECTS, N = 7, 6, 8


def _label_free(config):
  cfg = config.copy_and_resolve_references()
  cfg.fesgan.expression_labels = False
  return cfg


@pytest.fixture(scope="module")
def setup(tiny_config):
  models = build_models(tiny_config, K, SUBJECTS)
  phi = state_lib.create_phi_state(models, tiny_config.phi.optimizer, jax.random.key(1))
  states = state_lib.create_fesgan_states(models, tiny_config.fesgan.optimizer,
                                          jax.random.key(2), phi)
  x = jax.random.uniform(jax.random.key(3), (N, 32, 32, 1), minval=-1, maxval=1)
  params = {"g": states.g.params, "dimg": states.dimg.params, "dz": states.dz.params,
            "phi": states.phi.params}
  return models, x, params


@pytest.mark.slow
def test_label_free_stage_one_never_reads_the_labels(tiny_config, setup):
  """With expression_labels=False no loss, gradient or metric of stage 1 depends on the labels:
  there is no expression term and no D_img expression cross-entropy, every drawing uses the zero
  expression code (so the decoder's expression conditioning gets no gradient), and the
  translation is the reconstruction."""
  models, x, params = setup
  loss = steps.FesganLoss.from_config(_label_free(tiny_config).fesgan)
  assert not loss.labels and steps.FesganLoss.from_config(tiny_config.fesgan).labels
  rng = jax.random.key(4)
  batches = [{"image": x, "label": jnp.arange(N) % K, "subject": jnp.arange(N) % SUBJECTS},
             {"image": x, "label": (jnp.arange(N) * 3 + 2) % K, "subject": jnp.arange(N) % SUBJECTS}]

  def g_total(p, batch):
    terms, aux = steps.generator_terms(p, batch, rng, models=models, loss=loss)
    return loss.generator_total(terms), (terms, aux)

  def d_total(p, batch):
    ls, metrics = steps.discriminator_losses(p, batch, rng, models=models, loss=loss)
    return ls["dimg"] + ls["dz"], metrics

  g_step = jax.jit(jax.value_and_grad(g_total, has_aux=True))
  d_step = jax.jit(jax.value_and_grad(d_total, has_aux=True))
  outs = []
  for batch in batches:
    (g_val, (terms, aux)), g_grads = g_step(params, batch)
    (d_val, metrics), d_grads = d_step(params, batch)
    outs.append((g_val, terms, g_grads, d_val, metrics, d_grads))
    assert "expr" not in terms and "expr_acc_t" not in aux
    assert "dimg/cls" not in metrics and "dimg/cls_acc" not in metrics
    np.testing.assert_array_equal(aux["x_t"], aux["x_rec"])
    flat = traverse_util.flatten_dict(g_grads["g"]["decoder"], sep="/")
    film = [v for k, v in flat.items() if k.startswith("film") and k.endswith("kernel")]
    assert film and all(float(jnp.abs(v).max()) == 0.0 for v in film)
    assert any(float(jnp.abs(v).max()) > 0 for k, v in flat.items() if not k.startswith("film"))
  chex.assert_trees_all_equal(outs[0], outs[1])


def test_label_free_stage_one_is_refused_where_labels_are_needed(tiny_config):
  cfg = _label_free(tiny_config)
  with pytest.raises(ValueError, match=r"fesgan.expression_labels=False .*stage 'joint'"):
    validate.validate(cfg, stages.select(cfg))
  cfg.stages = ("phi", "fesgan", "real")
  validate.validate(cfg, stages.select(cfg))
  cfg.model.g_edit = "difference"
  with pytest.raises(ValueError, match=r"fesgan.expression_labels=False .*g_edit='difference'"):
    validate.validate(cfg, stages.select(cfg))


def _flat(tree):
  return traverse_util.flatten_dict(jax.device_get(tree), sep="/")


def test_stage_one_starts_from_a_pretrained_one(tiny_config, tiny_run, tmp_path):
  """fesgan.init_from: g and g_ema start from the source's g_ema, D_z and D_img's trunk and critic
  from its own; D_img's expression head from the source's rows of the classes both know when the
  source learnt from labels, fresh when it was label-free; mismatched shapes and a missing run are
  errors naming the field; a run started from a source trains on from it and, run again, comes
  back whole."""
  from jfesgan import train  # pylint: disable=g-import-not-at-top
  src_cfg = _label_free(tiny_config)
  src_cfg.data.data_dir = str(tmp_path / "tfds")
  src_cfg.data.data_seed = 1  # other faces
  src_cfg.stages = ("phi", "fesgan")
  label_free = str(tmp_path / "pretrain")
  train.train_and_evaluate(src_cfg, label_free)
  _, names = workdir_lib.read_run(label_free)
  source = workdir_lib.restore_finished(label_free, "fesgan", workdir_lib.read_config(label_free))

  cfg = tiny_config.copy_and_resolve_references()
  models = build_models(cfg, len(names), SUBJECTS)
  phi = state_lib.create_phi_state(models, cfg.phi.optimizer, jax.random.key(1))
  make = lambda init_from, class_names=names, m=models: state_lib.create_fesgan_states(
      m, cfg.fesgan.optimizer, jax.random.key(2), phi, init_from=init_from,
      class_names=class_names)
  fresh, started = make(""), make(label_free)
  chex.assert_trees_all_equal(started.g.params, source["g_ema"])
  chex.assert_trees_all_equal(started.g_ema, source["g_ema"])
  chex.assert_trees_all_equal(started.dz.params, source["dz"]["params"])
  ours, theirs = _flat(started.dimg.params), _flat(source["dimg"]["params"])
  for name, leaf in ours.items():
    want = _flat(fresh.dimg.params)[name] if name.startswith("classifier") else theirs[name]
    np.testing.assert_array_equal(leaf, want, err_msg=name)
  assert not np.allclose(_flat(fresh.g.params)["encoder/Dense_0/kernel"],
                         _flat(started.g.params)["encoder/Dense_0/kernel"])
  # With the code's expression term D_z also holds a classifier, which the source has not: its
  # prior layers come from the source, the classifier stays fresh.
  coded_cfg = tiny_config.copy_and_resolve_references()
  coded_cfg.fesgan.code_expr_weight = 1.0
  coded = build_models(coded_cfg, len(names), SUBJECTS)
  coded_fresh, coded_started = make("", m=coded), make(label_free, m=coded)
  for name, leaf in _flat(coded_started.dz.params).items():
    want = (_flat(coded_fresh.dz.params) if name.startswith("expression")
            else _flat(source["dz"]["params"]))[name]
    np.testing.assert_array_equal(leaf, want, err_msg=name)
  assert any(name.startswith("expression") for name in _flat(coded_started.dz.params))

  # A labelled source (the shared tiny run): the head's rows follow the classes by name.
  _, labelled = tiny_run
  _, run_names = workdir_lib.read_run(labelled)
  src_head = _flat(workdir_lib.restore_finished(labelled, "fesgan", workdir_lib.read_config(
      labelled))["dimg"]["params"])
  reordered = [*reversed(run_names[1:]), "boredom"]
  head = _flat(make(labelled, reordered).dimg.params)
  for k, name in enumerate(reordered[:-1]):
    j = list(run_names).index(name)
    np.testing.assert_array_equal(head["classifier/kernel"][:, k], src_head["classifier/kernel"][:, j])
    np.testing.assert_array_equal(head["classifier/bias"][k], src_head["classifier/bias"][j])
  np.testing.assert_array_equal(head["classifier/kernel"][:, -1],
                                _flat(fresh.dimg.params)["classifier/kernel"][:, -1])

  other = tiny_config.copy_and_resolve_references()
  other.model.latent_dim = 12
  with pytest.raises(ValueError,
                     match=r"fesgan.init_from=.*g/decoder/Dense_0/kernel has shape \(15,"):
    make(label_free, m=build_models(other, len(names), SUBJECTS))
  with pytest.raises(ValueError, match=r"fesgan.init_from=.*nowhere"):
    make(str(tmp_path / "nowhere"))
  without = str(tmp_path / "without_stage_one")  # a finished run whose stage 1 did not run
  shutil.copytree(label_free, without)
  shutil.rmtree(os.path.join(without, "checkpoints", "fesgan"))
  with pytest.raises(ValueError, match=r"fesgan.init_from=.*no checkpoint of stage 'fesgan'"):
    make(without)

  # A labelled run started from the label-free one trains on from it; run again, it is restored.
  run_cfg = tiny_config.copy_and_resolve_references()
  run_cfg.data.data_dir = src_cfg.data.data_dir
  run_cfg.stages = ("phi", "fesgan")
  run_cfg.fesgan.init_from = label_free
  run_cfg.seed = 3  # another initialisation than the source's: only init_from can make them close
  run = str(tmp_path / "run")
  train.train_and_evaluate(run_cfg, run)
  first = workdir_lib.restore_finished(run, "fesgan", workdir_lib.read_config(run))
  # Two Adam steps at lr 2e-4 from the source: every weight within a few 1e-4 of it, none equal.
  moved = np.abs(_flat(first["g"]["params"])["decoder/Dense_0/kernel"]
                 - _flat(source["g_ema"])["decoder/Dense_0/kernel"])
  assert 0 < moved.max() < 2e-3, moved.max()
  train.train_and_evaluate(run_cfg, run)
  chex.assert_trees_all_equal(
      workdir_lib.restore_finished(run, "fesgan", workdir_lib.read_config(run)), first)

