"""The plan of stages: names, dependencies, random streams and config sections."""

import os

import jax
import numpy as np
import pytest

from jfesgan import stages, steps
from jfesgan import state as state_lib


def test_every_stage_has_its_config_section():
  from configs import joint
  config = joint.get_config()
  assert tuple(config.stages) == stages.NAMES
  for stage in stages.PLAN:
    section = config[stage.name]
    assert stage.steps(config) == section.steps > 0, stage.name
    assert "optimizer" in section, stage.name
  # The real-only baseline trains as long as the joint recogniser (a field reference).
  config.joint.steps = 7
  assert stages.REAL.steps(config) == 7


def test_streams_are_distinct_and_fixed():
  streams = [s.stream for s in stages.PLAN] + [stages.EVAL_STREAM]
  assert len(set(streams)) == len(streams)
  seeds = {s.batch_seed(5) for s in stages.PLAN}
  assert len(seeds) == len(stages.PLAN)
  keys = np.stack([jax.random.key_data(s.key(5)) for s in stages.PLAN])
  assert len(np.unique(keys, axis=0)) == len(stages.PLAN)
  np.testing.assert_array_equal(jax.random.key_data(stages.FESGAN.key(5)),
                                jax.random.key_data(stages.FESGAN.key(5)))


def test_select_orders_and_checks_needs(tiny_config):
  cfg = tiny_config.copy_and_resolve_references()
  cfg.stages = ("joint", "real", "fesgan", "phi")
  assert [s.name for s in stages.select(cfg)] == ["phi", "fesgan", "real", "joint"]
  cfg.stages = ("real",)
  assert [s.name for s in stages.select(cfg)] == ["real"]
  cfg.stages = ("phi, fesgan",)  # --config.stages=phi,fesgan on the command line
  assert [s.name for s in stages.select(cfg)] == ["phi", "fesgan"]
  cfg.stages = ("phi", "joint")
  with pytest.raises(ValueError, match=r"'joint' needs \['fesgan'\]"):
    stages.select(cfg)
  cfg.stages = ("phi", "gan")
  with pytest.raises(ValueError, match="unknown stages \\['gan'\\]"):
    stages.select(cfg)
  cfg.stages = ()
  with pytest.raises(ValueError, match="empty"):
    stages.select(cfg)


def test_lineage_and_config_sections():
  assert stages.lineage("joint") == ("phi", "fesgan", "joint")
  assert stages.lineage("real") == ("real",)
  assert stages.config_sections("fesgan") == stages.SHARED_SECTIONS + ("phi", "fesgan")


@pytest.mark.parametrize("name", sorted(
    os.path.splitext(f)[0] for f in os.listdir(os.path.join(os.path.dirname(__file__), "..",
                                                            "configs"))
    if f.endswith(".py") and f != "__init__.py"))
def test_every_shipped_config_loads_and_validates(name):
  """Each file in configs/ builds (with a folder argument where it takes one) and passes the
  up-front checks of every field."""
  import importlib  # pylint: disable=g-import-not-at-top
  import inspect  # pylint: disable=g-import-not-at-top

  from jfesgan import validate  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(f"configs.{name}")
  takes_arg = bool(inspect.signature(module.get_config).parameters)
  config = module.get_config("/nonexistent/folder") if takes_arg else module.get_config()
  validate.validate(config, stages.select(config))


def test_stage_one_warmup_is_its_first_iterations_and_a_variant_of_its_step(tiny_config):
  """``fesgan.warmup.steps`` marks stage 1's first iterations as the warm-up variant of its step
  (compiled once beside the main one); beyond the stage's length it is refused by name."""
  from jfesgan import ahead, validate  # pylint: disable=g-import-not-at-top
  cfg = tiny_config.copy_and_resolve_references()
  cfg.fesgan.steps, cfg.fesgan.n_critic = 6, 2
  cfg.fesgan.warmup.steps = 3
  variants = [stages.FESGAN.static(cfg, s) for s in range(6)]
  assert [v["warmup"] for v in variants] == [True] * 3 + [False] * 3
  assert [v["update_g"] for v in variants] == [False, True] * 3
  assert len(ahead.static_variants(cfg, stages.FESGAN)) == 4
  cfg.fesgan.warmup.steps = 0
  assert not any(stages.FESGAN.static(cfg, s)["warmup"] for s in range(6))
  cfg.fesgan.warmup.steps = 6
  with pytest.raises(ValueError, match=r"fesgan\.warmup\.steps"):
    validate.validate(cfg, stages.select(cfg))
  cfg.fesgan.warmup.steps = 3
  cfg.fesgan.warmup.terms = ("rec,latent",)  # as --config.fesgan.warmup.terms=rec,latent gives
  validate.validate(cfg, stages.select(cfg))
  cfg.fesgan.warmup.terms = ("rec", "mask")  # not a generator term
  with pytest.raises(ValueError, match=r"fesgan\.warmup\.terms.*must name some of"):
    validate.validate(cfg, stages.select(cfg))


def test_discriminators_step_in_the_warmups_last_d_steps_iterations(tiny_config):
  """``fesgan.warmup.d_steps``: the warm-up's iterations before its last ``d_steps`` are the
  generator's warm-up step alone (a variant of the step without the discriminators'), from there
  the discriminators step in every iteration; -1, or as many as the warm-up has, is every
  iteration (no warm-up: nothing to wait for); refused by name below -1, with warm-up terms that
  read D_img, and with n_critic > 1."""
  from jfesgan import ahead, validate  # pylint: disable=g-import-not-at-top
  cfg = tiny_config.copy_and_resolve_references()
  cfg.fesgan.steps, cfg.fesgan.n_critic = 6, 1
  cfg.fesgan.warmup.steps, cfg.fesgan.warmup.d_steps = 4, 2
  cfg.fesgan.warmup.terms = ("rec",)  # reads neither D_img nor D_z
  variants = [stages.FESGAN.static(cfg, s) for s in range(6)]
  assert [v["update_d"] for v in variants] == [False] * 2 + [True] * 4
  assert [v["update_dz"] for v in variants] == [False] * 2 + [True] * 4
  assert [v["warmup"] for v in variants] == [True] * 4 + [False] * 2
  assert all(v["update_g"] for v in variants)
  assert len(ahead.static_variants(cfg, stages.FESGAN)) == 3
  validate.validate(cfg, stages.select(cfg))
  # A cosine schedule of theirs spans the 4 updates they make, g's its 6.
  assert state_lib.section_updates(cfg, "fesgan.optimizer.dimg")[0] == ("fesgan", 4)
  assert state_lib.section_updates(cfg, "fesgan.optimizer.g")[0] == ("fesgan", 6)
  assert state_lib.section_updates(cfg, "fesgan.optimizer.dz")[0] == ("fesgan", 4)
  # A warm-up term that reads D_z (latent) before D_img starts: D_z steps in every iteration.
  cfg.fesgan.warmup.terms = ("rec", "latent")
  assert state_lib.latent_start(cfg.fesgan.warmup) == 0
  assert [stages.FESGAN.static(cfg, s)["update_dz"] for s in range(6)] == [True] * 6
  assert [stages.FESGAN.static(cfg, s)["update_d"] for s in range(6)] == [False] * 2 + [True] * 4
  assert state_lib.section_updates(cfg, "fesgan.optimizer.dz")[0] == ("fesgan", 6)
  assert state_lib.section_updates(cfg, "fesgan.optimizer.dimg")[0] == ("fesgan", 4)
  cfg.fesgan.warmup.solo_terms = ("rec",)  # ... unless the terms there do not
  assert state_lib.latent_start(cfg.fesgan.warmup) == 2
  assert [stages.FESGAN.static(cfg, s)["update_dz"] for s in range(6)] == [False] * 2 + [True] * 4
  cfg.fesgan.warmup.terms, cfg.fesgan.warmup.solo_terms = ("rec", "identity"), ("rec", "latent")
  assert state_lib.latent_start(cfg.fesgan.warmup) == 0
  validate.validate(cfg, stages.select(cfg))
  cfg.fesgan.warmup.terms, cfg.fesgan.warmup.solo_terms = ("rec",), ()
  for every in (-1, 4, 5):
    cfg.fesgan.warmup.d_steps = every
    assert all(stages.FESGAN.static(cfg, s)["update_d"] for s in range(6)), every
  cfg.fesgan.warmup.steps, cfg.fesgan.warmup.d_steps = 0, 2  # no warm-up (configs/database.py)
  assert all(stages.FESGAN.static(cfg, s)["update_d"] for s in range(6))
  validate.validate(cfg, stages.select(cfg))
  cfg.fesgan.warmup.steps, cfg.fesgan.warmup.d_steps = 4, -2
  with pytest.raises(ValueError, match=r"fesgan\.warmup\.d_steps.*must be >= 0"):
    validate.validate(cfg, stages.select(cfg))
  cfg.fesgan.warmup.d_steps = 2
  cfg.fesgan.warmup.terms = ("rec", "expr")
  with pytest.raises(ValueError, match=r"fesgan\.warmup\.d_steps.*adv and expr read D_img"):
    validate.validate(cfg, stages.select(cfg))
  cfg.fesgan.warmup.terms = ("rec", "identity")
  cfg.fesgan.n_critic = 2
  with pytest.raises(ValueError, match=r"fesgan\.warmup\.d_steps.*n_critic=2"):
    validate.validate(cfg, stages.select(cfg))


def test_solo_terms_need_the_iterations_without_the_discriminators(tiny_config):
  """``fesgan.warmup.solo_terms``: the warm-up's terms before the discriminators start; refused by
  name with a term that reads D_img or is named twice, and where the discriminators step in every
  iteration (they would apply nowhere)."""
  from jfesgan import validate  # pylint: disable=g-import-not-at-top
  cfg = tiny_config.copy_and_resolve_references()
  cfg.fesgan.steps, cfg.fesgan.n_critic = 6, 1
  cfg.fesgan.warmup.steps, cfg.fesgan.warmup.d_steps = 4, 2
  cfg.fesgan.warmup.solo_terms = ("rec,latent",)  # as --config.fesgan.warmup.solo_terms=rec,latent
  validate.validate(cfg, stages.select(cfg))
  assert steps.FesganLoss.from_config(cfg.fesgan).solo_terms == ("rec", "latent")
  for bad in (("rec", "adv"), ("expr",), ("rec", "rec")):
    cfg.fesgan.warmup.solo_terms = bad
    with pytest.raises(ValueError, match=r"fesgan\.warmup\.solo_terms.*must name some of"):
      validate.validate(cfg, stages.select(cfg))
  cfg.fesgan.warmup.solo_terms = ("rec",)
  for every in (-1, 4):
    cfg.fesgan.warmup.d_steps = every
    with pytest.raises(ValueError, match=r"fesgan\.warmup\.solo_terms.*needs iterations without"):
      validate.validate(cfg, stages.select(cfg))
