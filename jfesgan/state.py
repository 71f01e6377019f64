"""Stage-wise train states: one TrainState and one optax optimiser per network.

Network names: ``g`` (generator: encoder + decoder), ``dimg`` (image discriminator), ``dz`` (latent
discriminator), ``phi`` (identity network), ``r`` (recogniser).  Each factory takes the optimiser
section(s) of the stage that trains the network (``config.<stage>.optimizer``).
"""

from __future__ import annotations

import functools
import os
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from flax.training import train_state

from jfesgan.data.classes import class_map
from jfesgan.defaults import BEFORE_ADDED, listed, stage_names
from jfesgan.models import Models
from jfesgan.run import workdir as workdir_lib

TrainState = train_state.TrainState


@flax.struct.dataclass
class FesganStates:
  """Stage ``fesgan``: the players ``g``, ``dimg``, ``dz``, the frozen identity network ``phi``,
  and ``g_ema``, the moving average of ``g``'s parameters (``config.fesgan.ema_decay``; with
  decay 0 a copy of them): the generator that samples, is scored, and starts stage 2."""

  g: TrainState
  dimg: TrainState
  dz: TrainState
  phi: TrainState
  g_ema: Any

  @property
  def step(self) -> jax.Array:
    """Stage-1 iterations: the discriminators' step counters count every iteration (they update
    in the warm-up's last ``fesgan.warmup.d_steps`` and every one after it), ``g`` every n_critic-th."""
    return self.dimg.step


class RState(TrainState):
  """The recogniser's state: a TrainState plus the running (EMA) real class centres (K, D) that
  stand in for classes with no real sample in a batch (intra-class loss)."""

  centres: jax.Array


@flax.struct.dataclass
class JointStates(FesganStates):
  """Stage ``joint``: the recogniser ``r`` joins the stage-1 players; ``phi`` stays frozen."""

  r: RState

  @property
  def step(self) -> jax.Array:
    """Stage-2 iterations (the recogniser steps every iteration)."""
    return self.r.step


def learning_rate(section, steps: int | None = None) -> float | optax.Schedule:
  """The learning rate of an optimiser section: ``lr``, warmed up linearly over ``warmup`` steps,
  then constant (``schedule="constant"``) or decayed to 0 along a cosine over the stage's ``steps``
  (``schedule="cosine"``)."""
  schedule, warmup = section.schedule, int(section.warmup)
  if schedule not in ("constant", "cosine"):
    raise ValueError(f"optimizer.schedule must be 'constant' or 'cosine', got {schedule!r}")
  if schedule == "cosine":
    if not steps or steps <= warmup:
      raise ValueError(f"optimizer.schedule='cosine' needs the stage's steps ({steps}) > "
                       f"optimizer.warmup ({warmup})")
    if not warmup:  # the same values, without optax's note about an empty warmup
      return optax.cosine_decay_schedule(section.lr, steps)
    return optax.warmup_cosine_decay_schedule(0.0, section.lr, warmup, steps, end_value=0.0)
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, section.lr, warmup),
                                 optax.constant_schedule(section.lr)], [warmup])
  return section.lr


def make_optimizer(section, steps: int | None = None) -> optax.GradientTransformation:
  """The optimiser of an optimiser section: ``name`` ('adam' or 'sgd' with momentum b1), the
  learning rate (:func:`learning_rate`; ``steps`` is the stage's length), ``b1``, ``b2``,
  decoupled ``weight_decay`` (AdamW's; 0 = none) and ``grad_clip`` (global norm; 0 = none)."""
  lr = learning_rate(section, steps)
  decay = float(section.weight_decay)
  if section.name == "adam":
    tx = (optax.adamw(lr, b1=section.b1, b2=section.b2, weight_decay=decay) if decay
          else optax.adam(lr, b1=section.b1, b2=section.b2))
  elif section.name == "sgd":
    tx = optax.sgd(lr, momentum=section.b1 or None)
    if decay:
      tx = optax.chain(optax.add_decayed_weights(decay), tx)
  else:
    raise ValueError(f"optimizer.name must be 'adam' or 'sgd', got {section.name!r}")
  if section.grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(section.grad_clip), tx)
  return tx


class PhasedState(NamedTuple):
  """The state of :func:`phased`: updates made, and each phase's optimiser state."""

  count: jax.Array
  first: optax.OptState
  second: optax.OptState


def phased(first: optax.GradientTransformation, second: optax.GradientTransformation,
           boundary: int) -> optax.GradientTransformation:
  """``first`` for the first ``boundary`` updates, then ``second``.  ``second``'s state is not
  touched before the switch, so it starts there with fresh moments and its schedule's count at
  0 (stage 1's warm-up: ``config.fesgan.warmup``).  A caller that knows the phase statically
  passes ``early=True`` or ``False`` to ``update`` (stage 1's step does: its warm-up is a variant
  of its own), which runs that phase's optimiser alone; otherwise a ``lax.cond`` on the count
  picks it (both phases compiled; on XLA:CPU the conditional keeps the update from fusing with
  the step around it: the generator's update alone 10-16 % slower at 48 px)."""
  def init(params):
    return PhasedState(jnp.zeros([], jnp.int32), first.init(params), second.init(params))

  def in_first(updates, state, params):
    u, s = first.update(updates, state.first, params)
    return u, s, state.second

  def in_second(updates, state, params):
    u, s = second.update(updates, state.second, params)
    return u, state.first, s

  def update(updates, state, params=None, *, early: bool | None = None, **unused):
    del unused
    if early is None:
      u, s1, s2 = jax.lax.cond(state.count < boundary, in_first, in_second, updates, state, params)
    else:
      u, s1, s2 = (in_first if early else in_second)(updates, state, params)
    return u, PhasedState(optax.safe_increment(state.count), s1, s2)

  return optax.GradientTransformationExtraArgs(init, update)


def generator_optimizer(optimizers, g_steps: int | None, warmup=None,
                        n_critic: int = 1) -> optax.GradientTransformation:
  """g's stage-1 optimiser: ``optimizers.g`` over its ``g_steps`` updates, or, with a warm-up
  (``warmup``: ``config.fesgan.warmup``, ``steps`` > 0 iterations), ``warmup.optimizer`` for the
  updates g makes in those iterations and then ``optimizers.g`` from fresh moments, its schedule
  spanning the updates left."""
  iterations = int(warmup.steps) if warmup is not None else 0
  if not iterations:
    return make_optimizer(optimizers.g, g_steps)
  warm = iterations // n_critic  # g steps at iterations i with i % n_critic == n_critic - 1
  if g_steps is not None and warm >= g_steps:
    raise ValueError(f"config.fesgan.warmup.steps={iterations} leaves no generator update of "
                     f"stage 1's {g_steps * n_critic} iterations after it (fesgan.steps)")
  rest = None if g_steps is None else g_steps - warm
  return phased(make_optimizer(warmup.optimizer, warm), make_optimizer(optimizers.g, rest), warm)


def _copy(tree):
  """Fresh buffers for a second copy of ``tree`` in a state: the steps donate their input states,
  and one buffer may not be donated twice."""
  return jax.tree.map(jnp.copy, tree)


# XLA:CPU compiles the initialisers (threefry bits, truncated normals: ~100 element-wise fusions
# per network) 4-9x faster at LLVM optimisation level 2 than at its default 3, to the same bits
# (every network of configs/tiny.py and configs/joint.py at 32x32x1, 48x48x1 and 128x128x3:
# tests/models_test.py checks two).  Creating the main job's states: 34 s -> 11 s (another job on
# the 2 cores).  Other backends keep their defaults.
_CPU_INIT_OPTIONS = {"xla_backend_optimization_level": 2}


@functools.cache
def _jitted_init(module) -> Any:
  """One jitted ``module.init`` per network (modules are hashable, equal when their fields are),
  so that creating a state again reuses the compiled initialiser."""
  options = _CPU_INIT_OPTIONS if jax.default_backend() == "cpu" else None
  return jax.jit(module.init, compiler_options=options)


def _init(module, *args) -> Any:
  """``module.init(*args)["params"]`` as one jitted computation: the same values as running the
  initialisers op by op, in a fraction of the memory (eager dispatch compiles and keeps an
  executable per operation: 550 MB for the main job's networks).  Under a trace (``jax.eval_shape``
  of a state, as checkpoint restores do) it is traced in place: compiler options are only
  accepted by an outermost ``jax.jit``."""
  if _traced(args):
    return module.init(*args)["params"]
  return _jitted_init(module)(*args)["params"]


def _traced(tree) -> bool:
  return any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(tree))


def _dummy_image(models: Models) -> jax.Array:
  return jnp.zeros((1, models.image_size, models.image_size, models.channels), jnp.float32)


def create_phi_state(models: Models, optimizer, rng: jax.Array,
                     steps: int | None = None) -> TrainState:
  """Fresh state of the identity network ``phi``, trained for ``steps`` steps (which a cosine
  schedule needs)."""
  params = _init(models.phi, rng, _dummy_image(models))
  return TrainState.create(apply_fn=models.phi.apply, params=params,
                           tx=make_optimizer(optimizer, steps))


def pretrained_r_params(params, workdir: str, class_names, field: str = "real.init_from"):
  """``params`` of a fresh recogniser with the trunk and the shared classes' head rows of the
  finished real-only recogniser in ``workdir`` (a run on another, larger database): pre-training.

  The trunk (every convolution and the embedding layer) is copied whole and must have the same
  shapes (the same ``model`` widths, ``data.image_size`` and ``data.channels``).  Head rows
  (kernel column and bias) are copied for each of ``class_names`` that the source knows under
  the same expression (:func:`jfesgan.data.classes.canonical`: ``angry`` = ``anger``, ...); the
  others (CK+'s contempt from FER2013) keep their fresh initialisation.  ``field`` names the config
  field in errors."""
  try:
    source_config, source_classes = workdir_lib.read_run(workdir)
    source = workdir_lib.restore_finished(os.path.abspath(workdir), "real", source_config)["params"]
  except (FileNotFoundError, ValueError) as e:
    raise ValueError(f"config.{field}={workdir!r}: {e}") from e
  _check_same_layers(params["trunk"], source["trunk"], f"config.{field}={workdir!r}",
                     "recogniser's trunk", "trunk", "model.r_arch or model.num_down",
                     "model widths, data.image_size and data.channels")
  cmap = class_map(source_classes, class_names)
  if not (cmap >= 0).any():
    raise ValueError(f"config.{field}={workdir!r}: none of its classes {source_classes} is "
                     f"one of these {tuple(class_names)}")
  head = _shared_rows(params["head"], source["head"], cmap)
  return dict(params, trunk=jax.tree.map(jnp.asarray, source["trunk"]), head=head)


def _check_same_layers(fresh, source, where: str, what: str, prefix: str, layer_fields: str,
                       shape_fields: str, skip: str | None = None) -> None:
  """Raises a ValueError starting with ``where`` unless ``source`` (a pre-training run's
  parameters) has the layers of ``fresh`` with the same shapes (those under ``skip`` may differ
  in shape): ``layer_fields`` / ``shape_fields`` name the config fields that would explain a
  difference in layers / shapes."""
  mine = traverse_util.flatten_dict(flax.core.unfreeze(fresh), sep="/")
  theirs = traverse_util.flatten_dict(flax.core.unfreeze(source), sep="/")
  if mine.keys() != theirs.keys():
    raise ValueError(f"{where}: its {what} has layers {sorted(theirs)}, this one {sorted(mine)} "
                     f"({layer_fields} differ?)")
  for name, leaf in mine.items():
    if leaf.shape != theirs[name].shape and not (skip and name.startswith(skip)):
      raise ValueError(f"{where}: {prefix}/{name} has shape {tuple(theirs[name].shape)} there "
                       f"and {tuple(leaf.shape)} here: {shape_fields} must match the source "
                       "run's")


def _shared_rows(head: dict, source: dict, cmap: np.ndarray) -> dict:
  """A classifier head (``kernel`` (D, K), ``bias`` (K,)) with the columns of the classes the
  source knows (``cmap[k]`` >= 0: the source's index of our class k) taken from ``source``."""
  shared = np.flatnonzero(cmap >= 0)
  return {"kernel": head["kernel"].at[:, shared].set(source["kernel"][:, cmap[shared]]),
          "bias": head["bias"].at[shared].set(source["bias"][cmap[shared]])}


def _start_r(models: Models, rng: jax.Array, init_from: str, class_names, field: str):
  params = _init(models.r, rng, _dummy_image(models))
  if init_from:
    if class_names is None:
      raise ValueError(f"config.{field} is set but the class names of the data are not known")
    if _traced(params):  # a restore's abstract state: pre-training keeps every shape and dtype,
      return params      # and the checkpoint holds the values (the source is read only afresh)
    params = pretrained_r_params(params, init_from, class_names, field)
  return params


def create_r_state(models: Models, optimizer, rng: jax.Array, steps: int | None = None,
                   init_from: str = "", class_names=None) -> TrainState:
  """Fresh state of a recogniser ``r`` trained on real images only, for ``steps`` steps; with
  ``init_from`` (``config.real.init_from``) pre-trained from that run
  (:func:`pretrained_r_params`)."""
  params = _start_r(models, rng, init_from, class_names, "real.init_from")
  return TrainState.create(apply_fn=models.r.apply, params=params,
                           tx=make_optimizer(optimizer, steps))


def pretrained_fesgan_params(params: dict, workdir: str, class_names) -> dict:
  """``params`` (fresh ``{'g', 'dimg', 'dz'}`` of stage 1) started from the finished stage 1 of
  the run in ``workdir`` (``config.fesgan.init_from``: pre-training on another collection).

  g takes that run's moving average g_ema (the generator it sampled and reported), D_z its D_z,
  D_img its trunk and critic (D_z's classifier of the code's expression, where there is one, stays
  fresh); D_img's expression head takes its rows of the classes both know
  (:func:`jfesgan.data.classes.canonical`) when that run learnt from expression labels, and stays
  fresh otherwise (a label-free run never trained it).  Every other leaf must have the same shape
  (the same ``model`` fields, ``data.image_size`` and ``data.channels``)."""
  field = "fesgan.init_from"
  try:
    source_config, source_classes = workdir_lib.read_run(workdir)
    source = workdir_lib.restore_finished(os.path.abspath(workdir), "fesgan", source_config)
  except (FileNotFoundError, ValueError) as e:
    raise ValueError(f"config.{field}={workdir!r}: {e}") from e
  theirs_all = {"g": source["g_ema"], "dimg": source["dimg"]["params"],
                "dz": source["dz"]["params"]}
  # D_z's classifier of the code's expression (fesgan.code_expr_weight) starts fresh here: it
  # reads this run's classes, and a run without the term has none.
  fresh_dz, own = _split_code_classifier(params["dz"])
  theirs_all["dz"] = _split_code_classifier(theirs_all["dz"])[0]
  out = {}
  for net, fresh in {**params, "dz": fresh_dz}.items():
    # D_img's expression head may differ (another database's classes): its rows are mapped below.
    _check_same_layers(fresh, theirs_all[net], f"config.{field}={workdir!r}", net, net,
                       "model fields such as g_depth, g_edit or num_down",
                       "model widths, latent_dim, data.image_size and data.channels",
                       skip="classifier" if net == "dimg" else None)
    out[net] = jax.tree.map(jnp.asarray, flax.core.unfreeze(theirs_all[net]))
  out["dz"] = {**out["dz"], **own}
  head = flax.core.unfreeze(params["dimg"])["classifier"]
  if bool(source_config.fesgan.get("expression_labels", True)):
    head = _shared_rows(head, out["dimg"]["classifier"], class_map(source_classes, class_names))
  out["dimg"] = dict(out["dimg"], classifier=head)
  return out


def _split_code_classifier(dz_params) -> tuple[dict, dict]:
  """D_z's parameters as (its prior's layers, its classifier of the code's expression: the
  ``expression*`` layers, empty without ``fesgan.code_expr_weight``)."""
  layers = flax.core.unfreeze(dz_params)
  own = {k: v for k, v in layers.items() if k.startswith("expression")}
  return {k: v for k, v in layers.items() if k not in own}, own


def create_fesgan_states(models: Models, optimizers, rng: jax.Array, phi: TrainState,
                         steps: int | None = None, n_critic: int = 1, init_from: str = "",
                         class_names=None, warmup=None) -> FesganStates:
  """Fresh stage-1 states around a trained identity network ``phi``; ``optimizers`` has sections
  ``g``, ``dimg`` and ``dz``.  Over ``steps`` iterations D_img steps every time from
  :func:`discriminator_start` on, D_z from :func:`latent_start` on and ``g`` every
  ``n_critic``-th, so a cosine schedule spans the
  updates each makes (:func:`generator_optimizer`: with ``warmup``, ``config.fesgan.warmup``, g's
  first updates have an optimiser of their own).  With
  ``init_from`` (``config.fesgan.init_from``) the networks start from that run's stage 1
  (:func:`pretrained_fesgan_params`)."""
  g_steps = None if steps is None else steps // n_critic
  d_steps = None if steps is None else steps - discriminator_start(warmup)
  z_steps = None if steps is None else steps - latent_start(warmup)
  kg, kd, kz = jax.random.split(rng, 3)
  img = _dummy_image(models)
  g_params = _init(models.g, kg, img, jnp.zeros((1, models.num_classes)))
  dimg_params = _init(models.dimg, kd, img)
  dz_params = _init(models.dz, kz, jnp.zeros((1, models.latent_dim)))
  # A restore's abstract state keeps every shape and dtype; the checkpoint holds the values.
  if init_from and not _traced(g_params):
    if class_names is None:
      raise ValueError("config.fesgan.init_from is set but the class names of the data are not "
                       "known")
    pre = pretrained_fesgan_params({"g": g_params, "dimg": dimg_params, "dz": dz_params},
                                   init_from, class_names)
    g_params, dimg_params, dz_params = pre["g"], pre["dimg"], pre["dz"]
  return FesganStates(
      g=TrainState.create(apply_fn=models.g.apply, params=g_params,
                          tx=generator_optimizer(optimizers, g_steps, warmup, n_critic)),
      dimg=TrainState.create(apply_fn=models.dimg.apply, params=dimg_params,
                             tx=make_optimizer(optimizers.dimg, d_steps)),
      dz=TrainState.create(apply_fn=models.dz.apply, params=dz_params,
                           tx=make_optimizer(optimizers.dz, z_steps)),
      phi=phi, g_ema=_copy(g_params))


def create_joint_states(models: Models, config, rng: jax.Array, fes: FesganStates,
                        class_names=None) -> JointStates:
  """Stage-2 states: the trained stage-1 players with fresh optimiser states (``config.fesgan``'s
  settings; ``g`` starts from the moving average ``g_ema``), and a new ``r``
  (``config.joint.optimizer``; pre-trained from ``config.joint.init_from`` as the real-only R is,
  or its trunk copied from Phi when ``config.joint.init_r_from_phi``)."""
  init_from = config.joint.init_from
  if init_from and config.joint.init_r_from_phi:
    raise ValueError("config.joint.init_from and config.joint.init_r_from_phi both set: R starts "
                     "from one of them")
  params = _start_r(models, rng, init_from, class_names, "joint.init_from")
  if config.joint.init_r_from_phi:
    params = dict(params, trunk=fes.phi.params["trunk"])
  r = RState.create(apply_fn=models.r.apply, params=params,
                    tx=make_optimizer(config.joint.optimizer, config.joint.steps),
                    centres=jnp.zeros((models.num_classes, config.model.embed_dim), jnp.float32))
  # Every player steps once per stage-2 iteration (when it is updated at all).
  steps = config.joint.steps
  fresh = lambda s, section: TrainState.create(apply_fn=s.apply_fn, params=s.params,
                                               tx=make_optimizer(section, steps))
  opt = config.fesgan.optimizer
  g = TrainState.create(apply_fn=fes.g.apply_fn, params=_copy(fes.g_ema),
                        tx=make_optimizer(opt.g, steps))
  return JointStates(g=g, dimg=fresh(fes.dimg, opt.dimg), dz=fresh(fes.dz, opt.dz), phi=fes.phi,
                     r=r, g_ema=fes.g_ema)


# The generator terms that read D_z: its prior's head (latent) and its classifier of the code's
# expression (code_expr).
READ_DZ = frozenset({"latent", "code_expr"})


def discriminator_start(warmup) -> int:
  """The first stage-1 iteration in which D_img and D_z step (``warmup``: ``config.fesgan.warmup``
  or None): the warm-up's last ``warmup.d_steps`` iterations are theirs, and every one after it;
  -1, or a count as long as the warm-up or longer, is every iteration (0)."""
  if warmup is None or int(warmup.get("d_steps", BEFORE_ADDED["fesgan.warmup.d_steps"])) < 0:
    return 0
  return max(0, int(warmup.steps) - int(warmup.d_steps))


def latent_start(warmup) -> int:
  """The first stage-1 iteration in which D_z steps: :func:`discriminator_start`, or 0 where the
  warm-up's terms before it (``warmup.solo_terms``, else ``warmup.terms``) read D_z (:data:`READ_DZ`):
  then D_z steps alone in those iterations."""
  start = discriminator_start(warmup)
  if start and READ_DZ & set(listed(warmup.get("solo_terms", ())) or listed(warmup.terms)):
    return 0
  return start


def check_config(config, need) -> None:
  """Checks every optimiser section of ``config`` (a section with ``name`` and ``lr``, wherever
  it sits) for :func:`jfesgan.validate.validate`: ``need(ok, field, value, rule)`` records a
  problem."""
  for path, section in optimizer_sections(config):
    need(section.name in ("adam", "sgd"), f"{path}.name", section.name, "must be 'adam' or 'sgd'")
    need(section.schedule in ("constant", "cosine"), f"{path}.schedule", section.schedule,
         "must be 'constant' or 'cosine'")
    need(section.lr > 0, f"{path}.lr", section.lr, "must be > 0")
    need(section.weight_decay >= 0, f"{path}.weight_decay", section.weight_decay, "must be >= 0")
    need(section.warmup >= 0, f"{path}.warmup", section.warmup, "must be >= 0")
    need(section.grad_clip >= 0, f"{path}.grad_clip", section.grad_clip, "must be >= 0")
    if section.schedule == "cosine":
      for stage, updates in section_updates(config, path):
        need(updates > section.warmup, f"{path}.warmup", section.warmup,
             f"must be below the {updates} updates it makes in stage {stage!r} with "
             f"schedule='cosine' (its steps)")


def section_updates(config, path: str) -> list[tuple[str, int]]:
  """(stage, number of updates) for each stage of ``config.stages`` that steps an optimiser made
  from the section at ``path`` (what a cosine schedule spans): a stage's own section steps every
  iteration, but g every ``fesgan.n_critic``-th in stage 1; ``fesgan.optimizer.*`` also serve
  stage 2 (one update per iteration); D_img skips stage 1's iterations before
  :func:`discriminator_start`, D_z those before :func:`latent_start`."""
  stage, *rest = path.split(".")
  if stage not in ("phi", "fesgan", "real", "joint") or not (
      stage in config and "steps" in config[stage]):
    return []
  planned = set(stage_names(config))
  steps = int(config[stage].steps)
  if stage != "fesgan":
    return [(stage, steps)] if stage in planned else []
  # g every n_critic-th iteration; D_img from discriminator_start on, D_z from latent_start.
  warmup = config.fesgan.get("warmup")
  own = (steps // int(config.fesgan.n_critic) if rest[-1:] == ["g"]
         else steps - latent_start(warmup) if rest[-1:] == ["dz"]
         else steps - discriminator_start(warmup))
  found = [("fesgan", own)] if "fesgan" in planned else []
  return found + ([("joint", int(config.joint.steps))] if "joint" in planned else [])


def optimizer_sections(config, prefix: str = ""):
  """(path, section) of every optimiser section (one with ``name`` and ``lr``) in ``config``."""
  for key in config.keys():
    value = config[key]
    if hasattr(value, "keys"):
      path = f"{prefix}{key}"
      if "lr" in value and "name" in value:
        yield path, value
      else:
        yield from optimizer_sections(value, path + ".")
