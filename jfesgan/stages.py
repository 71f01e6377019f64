"""The plan of stages: the one list that training, cross-validation and the tools read.

A stage has one name, used everywhere for it: its config section (``config.<name>``, holding its
``steps``, ``optimizer`` and options), its checkpoint folder (``checkpoints/<name>``), the
``stage`` field of its metric records, its held-out scores (``eval/<name>/...``), its confusion
matrix (``confusion_<name>``) and, for the recognisers, the ablation rows that report them.

====== ======================================================================================
phi    stage 0: the identity network Phi learns the training subjects (for the identity loss)
fesgan stage 1: FESGAN: encoder + decoder (``g``), D_img and D_z, with Phi frozen
real   a recogniser on real images only: the real-only baseline and the judge of synthesis
joint  stage 2: the recogniser R learnt jointly with the generator (intra-class loss, RDBP)
====== ======================================================================================

Each stage draws from its own random stream (``stream``): its initialisation and step keys
(:meth:`Stage.key`) and its batches (:meth:`Stage.batch_seed`) depend on the config seed and the
stream only, so adding, skipping or reordering other stages never changes them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax

from jfesgan import state as state_lib
from jfesgan import steps
from jfesgan.augment import Augment
from jfesgan.data.pipeline import ArrayDataset
from jfesgan.defaults import BEFORE_ADDED, stage_names
from jfesgan.models import Models

# The random stream of the held-out evaluation (prior samples of the synthesis scores).
EVAL_STREAM = 3
# Config fields every stage depends on, besides the sections of itself and of the stages it needs.
SHARED_SECTIONS = ("seed", "batch_size", "data", "model")


@dataclasses.dataclass(frozen=True)
class Context:
  """What a stage is built from: the config, the networks and the training data."""

  config: Any
  models: Models
  train: ArrayDataset


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of the plan.

  Attributes:
    name: the stage's one name (see the module docstring).
    title: a few words for people (plots, reports).
    stream: id of the stage's random stream.
    needs: stages whose finished states this one starts from.
    create: ``(ctx, finished) -> state``: a fresh state, from the finished states it needs.
    step: ``ctx -> step_fn(state, batch, rng, **static) -> (state, metrics)`` with its
      collaborators bound.
    static: ``(config, step) -> dict`` of the step's static keyword arguments at that step
      (variants of the step, compiled once each), named in ``static_argnames``.
    label_key: the batch field the stage learns to predict ("label" or "subject").
    show: metrics on the progress bar (default: the stage's loss and accuracy).
    recogniser: ``state -> params`` of an expression recogniser scored on held-out faces.
    generator: ``state -> params`` of a generator drawn in sample grids.
  """

  name: str
  title: str
  stream: int
  needs: tuple[str, ...]
  create: Callable[[Context, Mapping[str, Any]], Any]
  step: Callable[[Context], Callable]
  static: Callable[[Any, int], dict] | None = None
  static_argnames: tuple[str, ...] = ()
  label_key: str = "label"
  show: tuple[str, ...] = ()
  recogniser: Callable[[Any], Any] | None = None
  generator: Callable[[Any], Any] | None = None

  def steps(self, config) -> int:
    """The stage's number of steps (``config.<name>.steps``)."""
    return int(config[self.name].steps)

  def key(self, seed: int) -> jax.Array:
    """The root random key of the stage (initialisation; step keys fold in the step)."""
    return jax.random.fold_in(jax.random.key(seed), self.stream)

  def batch_seed(self, seed: int) -> int:
    """The seed of the stage's batch order and augmentation."""
    return seed * 1000 + self.stream

  @property
  def sections(self) -> tuple[str, ...]:
    """The top-level config fields that decide what this stage trains
    (:func:`config_sections`): resuming and ``start_from`` compare these."""
    return config_sections(self.name)


def _fesgan_loss(ctx: Context) -> steps.FesganLoss:
  return steps.FesganLoss.from_config(ctx.config.fesgan)


def _fesgan_variant(config, step: int) -> dict:
  """Stage 1's step at iteration ``step``: whether g updates (every ``n_critic``-th), whether
  it is in its warm-up (the first ``fesgan.warmup.steps``) and whether the discriminators step
  (in the warm-up's last ``fesgan.warmup.d_steps`` iterations and every one after it:
  :func:`jfesgan.state.discriminator_start`), and D_z (:func:`jfesgan.state.latent_start`: alone
  before the others where the warm-up's terms there read it)."""
  n, warmup = config.fesgan.n_critic, config.fesgan.get("warmup")
  return {"update_g": step % n == n - 1, "warmup": step < _warmup_steps(config),
          "update_d": step >= state_lib.discriminator_start(warmup),
          "update_dz": step >= state_lib.latent_start(warmup)}


def _warmup_steps(config) -> int:
  warmup = config.fesgan.get("warmup")  # a run saved before the field trained as BEFORE_ADDED says
  return int(warmup.steps) if warmup is not None else BEFORE_ADDED["fesgan.warmup.steps"]


PLAN: tuple[Stage, ...] = (
    Stage(
        name="phi", title="identity network Phi", stream=0, needs=(),
        create=lambda ctx, done: state_lib.create_phi_state(
            ctx.models, ctx.config.phi.optimizer, PHI.key(ctx.config.seed),
            steps=ctx.config.phi.steps),
        step=lambda ctx: functools.partial(steps.phi_step, model=ctx.models.phi),
        label_key="subject"),
    Stage(
        name="fesgan", title="FESGAN", stream=1, needs=("phi",),
        create=lambda ctx, done: state_lib.create_fesgan_states(
            ctx.models, ctx.config.fesgan.optimizer, FESGAN.key(ctx.config.seed), done["phi"],
            steps=ctx.config.fesgan.steps, n_critic=ctx.config.fesgan.n_critic,
            init_from=ctx.config.fesgan.get("init_from", ""),
            class_names=ctx.train.class_names, warmup=ctx.config.fesgan.get("warmup")),
        step=lambda ctx: functools.partial(steps.fesgan_step, models=ctx.models,
                                           loss=_fesgan_loss(ctx)),
        static=_fesgan_variant, static_argnames=("update_g", "warmup", "update_d", "update_dz"),
        show=("g/rec", "g/expr", "g/expr_acc_t", "dimg/wasserstein", "dimg/score_gap",
              "dimg/cls_acc"),
        generator=lambda s: s.g_ema),
    Stage(
        name="real", title="real-only R", stream=2, needs=(),
        create=lambda ctx, done: state_lib.create_r_state(
            ctx.models, ctx.config.real.optimizer, REAL.key(ctx.config.seed),
            steps=ctx.config.real.steps, init_from=ctx.config.real.init_from,
            class_names=ctx.train.class_names),
        step=lambda ctx: functools.partial(
            steps.recogniser_step, model=ctx.models.r, prefix="real",
            augment=Augment.from_config(ctx.config.real.augment),
            intra_weight=float(ctx.config.real.intra_weight)),
        recogniser=lambda s: s.params),
    Stage(
        name="joint", title="joint R", stream=4, needs=("fesgan",),
        create=lambda ctx, done: state_lib.create_joint_states(
            ctx.models, ctx.config, JOINT.key(ctx.config.seed), done["fesgan"],
            class_names=ctx.train.class_names),
        step=lambda ctx: functools.partial(
            steps.joint_step, models=ctx.models, fesgan=_fesgan_loss(ctx),
            joint=steps.JointLoss.from_config(ctx.config.joint)),
        show=("r/ce_real", "r/ce_syn", "r/intra", "r/acc_real", "r/acc_syn"),
        recogniser=lambda s: s.r.params, generator=lambda s: s.g_ema),
)
BY_NAME: dict[str, Stage] = {s.name: s for s in PLAN}
PHI, FESGAN, REAL, JOINT = PLAN
NAMES = tuple(BY_NAME)


def select(config) -> tuple[Stage, ...]:
  """The stages ``config.stages`` names, in the plan's order; raises naming a stage that is
  unknown or that lacks a stage it needs.  Entries may hold several comma-separated names, as
  ``--config.stages=phi,fesgan`` gives."""
  names = stage_names(config)
  unknown = [n for n in names if n not in BY_NAME]
  if unknown:
    raise ValueError(f"config.stages has unknown stages {unknown}; the plan is {NAMES}")
  if not names:
    raise ValueError(f"config.stages is empty; the plan is {NAMES}")
  for n in names:
    missing = [m for m in BY_NAME[n].needs if m not in names]
    if missing:
      raise ValueError(f"config.stages: stage {n!r} needs {missing}, which config.stages="
                       f"{names} leaves out")
  return tuple(s for s in PLAN if s.name in names)


def lineage(name: str) -> tuple[str, ...]:
  """``name`` and every stage it needs, directly or not, in the plan's order."""
  seen = {name}
  todo = [name]
  while todo:
    for m in BY_NAME[todo.pop()].needs:
      if m not in seen:
        seen.add(m)
        todo.append(m)
  return tuple(n for n in NAMES if n in seen)


def config_sections(name: str) -> tuple[str, ...]:
  """The top-level config fields that determine what stage ``name`` trains: the shared ones and
  the sections of the stage and of every stage it needs."""
  return SHARED_SECTIONS + lineage(name)


def run_sections(names) -> tuple[str, ...]:
  """The top-level config fields that determine what a run of stages ``names`` produces: those
  of every stage, the list of stages and the evaluation settings."""
  sections = [k for n in names for k in config_sections(n)]
  return tuple(dict.fromkeys(sections + ["stages", "eval"]))


def synthesis_inputs(finished: Mapping[str, Any]) -> dict[str, Any] | None:
  """The parameters the synthesis scores need, once the generator (``fesgan``, with its frozen
  Phi) and the judge (``real``) are both trained; else None."""
  if FESGAN.name not in finished or REAL.name not in finished:
    return None
  fes = finished[FESGAN.name]
  return dict(g_params=fes.g_ema, phi_params=fes.phi.params,
              r_params=finished[REAL.name].params)
