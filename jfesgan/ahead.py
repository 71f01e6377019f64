"""Compiling the stages' train steps ahead of time, in a background thread, while the earlier
stages train (it starts once the data are loaded: the batches' shapes come from them).

XLA compiles each stage's step the first time it is called; for the main job that is about 50 s
on 2 CPU cores, spent in turn at the start of every stage.  :class:`CompileAhead` lowers every
stage's step from the *shapes* of its state (``jax.eval_shape`` of the stage's ``create`` on the
shapes of the states it starts from: nothing is initialised or trained) and compiles it in a
thread of its own; XLA compiles outside Python's lock, so this overlaps with training.  The
compiled programs land in the persistent compilation cache (``--compilation_cache``, on by
default), from which the stage's own call of the same program then loads them; the stage waits
for its step's compilation (:meth:`CompileAhead.wait`) rather than compiling the same program a
second time.  Nothing changes what is computed: the cache holds XLA's own output for the same
program.  Without a persistent cache, or with ``config.steps_per_call`` > 1 (whose loop program
depends on the run's schedule), it does nothing.  A failure to compile ahead is logged, and the
stage then compiles its step itself as it would have.

The programs compiled ahead are lowered from the shapes *placed* as the training loop places its
arguments (:func:`placed_arguments`): lowered from unplaced shapes the GAN stages' programs differ
in their text from the ones the stages run, miss the cache and would be compiled twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import jax
from absl import logging

from jfesgan import parallel, stages
from jfesgan.data import pipeline


def enabled(config) -> bool:
  """Whether compiling ahead can help: a persistent cache to hand the programs over, one step per
  call, and ``config.compile_ahead`` on."""
  return (bool(config.get("compile_ahead", False)) and int(config.steps_per_call) == 1
          and bool(jax.config.jax_compilation_cache_dir))


def abstract_batch(ctx: stages.Context, stage: stages.Stage) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes of one global batch of ``stage``, as the training loop builds it."""
  batches = pipeline.Batches(ctx.train, ctx.config.batch_size, seed=0,
                             hflip=ctx.config.data.hflip, subject_index=stage.label_key == "subject")
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches.at(0).items()}


def placed_arguments(state, batch, stage: stages.Stage, ctx: stages.Context, mesh) -> tuple:
  """The shapes of a step's arguments placed as the training loop places them: the state
  replicated over the mesh, the batch sharded over it, the key on the default device as
  ``jax.random.fold_in`` leaves it.

  Placement is part of the program: an array's sharding rides on its abstract value while jax
  traces, and two calls of one jitted helper whose arguments are placed differently are lowered as
  two functions (measured with jax 0.10.2: the stage-1 step draws one target expression from the
  batch's labels and one from the key, both through ``jax.nn.one_hot``; lowered from unplaced
  shapes they share one function, from the loop's arrays they are two, ``_one_hot`` and
  ``_one_hot_13``).  The persistent cache is keyed by the module's text, so the program compiled
  ahead must be lowered from arguments placed exactly as the loop's (``tests/ahead_test.py``
  compares the texts for every stage).
  """
  def placed(tree, sharding):
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding,
                                                       weak_type=s.weak_type), tree)

  key = jax.eval_shape(lambda: jax.random.fold_in(stage.key(ctx.config.seed), 0))
  return (placed(state, parallel.replicated(mesh)), placed(batch, parallel.data_sharding(mesh)),
          key)


def static_variants(config, stage: stages.Stage) -> list[dict[str, Any]]:
  """The distinct static arguments the stage's step is called with over its steps."""
  if not stage.static:
    return [{}]
  seen: dict[tuple, dict[str, Any]] = {}
  for step in range(stage.steps(config)):
    static = stage.static(config, step)
    seen.setdefault(tuple(sorted(static.items())), static)
  return list(seen.values())


class CompileAhead:
  """A background thread that compiles the steps of ``todo`` (stage names of ``plan``) in plan
  order; ``seconds[name]`` is how long each took there."""

  def __init__(self, plan: Sequence[stages.Stage], todo: Sequence[str], ctx: stages.Context,
               mesh):
    self._done = {name: threading.Event() for name in todo}
    self.seconds: dict[str, float] = {}
    self.failed: dict[str, str] = {}
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, args=(list(plan), ctx, mesh), daemon=True,
                                    name="jfesgan-compile-ahead")
    self._thread.start()

  def _run(self, plan: list[stages.Stage], ctx: stages.Context, mesh) -> None:
    abstract: dict[str, Any] = {}
    for stage in plan:
      if stage.name not in self._done or self._stop.is_set():
        continue
      t = time.time()
      try:
        for name in stages.lineage(stage.name):  # the states it starts from, as shapes
          if name not in abstract:
            need = {m: abstract[m] for m in stages.BY_NAME[name].needs}
            create = stages.BY_NAME[name].create
            abstract[name] = jax.eval_shape(lambda fin, create=create: create(ctx, fin), need)
        step = parallel.jit_step(stage.step(ctx), mesh, static_argnames=stage.static_argnames)
        state, batch, key = placed_arguments(abstract[stage.name], abstract_batch(ctx, stage),
                                             stage, ctx, mesh)
        for static in static_variants(ctx.config, stage):
          step.lower(state, batch, key, **static).compile()
        self.seconds[stage.name] = time.time() - t
        logging.info("stage %s: step compiled ahead in %.1f s", stage.name, self.seconds[stage.name])
      except Exception as e:  # pylint: disable=broad-except
        self.failed[stage.name] = f"{type(e).__name__}: {e}"
        logging.warning("stage %s: compiling its step ahead failed (%s); it compiles when it "
                        "starts", stage.name, self.failed[stage.name])
      finally:
        self._done[stage.name].set()

  def close(self) -> None:
    """Compiles nothing more (the stage being compiled finishes): the run ended early."""
    self._stop.set()
    for event in self._done.values():
      event.set()

  def wait(self, name: str) -> float:
    """Waits until stage ``name``'s step is compiled (at once for a stage not compiled ahead);
    returns the seconds waited."""
    event = self._done.get(name)
    if event is None:
      return 0.0
    t = time.time()
    event.wait()
    return time.time() - t
