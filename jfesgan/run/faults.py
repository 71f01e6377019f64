"""What a long run meets besides training: preemption, non-finite values, and a second run in the
same workdir.

- :class:`Preemption`: SIGTERM (how preemption arrives on cloud TPUs and batch schedulers) and
  Ctrl-C (SIGINT) set a flag that the training loop reads between chunks of steps; the running
  stage then saves its current step, says so in one line and the process exits with status
  :data:`EXIT_PREEMPTED` (SIGTERM) or :data:`EXIT_INTERRUPTED` (SIGINT).  A second Ctrl-C stops
  at once.  Re-running the same command resumes from the saved step.
- :class:`FiniteGuard`: a device-side record of the first chunk of steps whose metrics (losses,
  gradient and parameter norms) hold a NaN or Inf; read on the host only where the loop already
  syncs (logging, checkpoints), and before every save, so a non-finite state is never saved.
- :class:`WorkdirLock`: one run per workdir (``<workdir>/.lock`` names the owner's host and pid);
  a lock whose process is gone is taken over with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Exit statuses (the shell's 128 + signal number): documented in the README.
EXIT_PREEMPTED = 143
EXIT_INTERRUPTED = 130
EXIT_NON_FINITE = 3
EXIT_FAILED = 1


class Stopped(Exception):
  """The run stopped on a signal after saving; ``status`` is the process's exit status."""

  def __init__(self, message: str, status: int):
    super().__init__(message)
    self.status = status


class NonFiniteError(FloatingPointError):
  """A stage produced NaN or Inf; nothing non-finite was saved."""

  status = EXIT_NON_FINITE


class Preemption:
  """Catches SIGTERM and SIGINT while active (a context manager; main thread only, elsewhere it
  does nothing).  ``signal_name`` is the first signal received, or None."""

  def __init__(self):
    self.signal_name: str | None = None
    self._previous: dict[int, Any] = {}

  def __enter__(self) -> Preemption:
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def _handle(self, signum, frame) -> None:
    del frame
    if self.signal_name is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop now
      raise KeyboardInterrupt
    self.signal_name = signal.Signals(signum).name

  def requested_at(self, step: int) -> bool:
    """Whether to stop after ``step``: a signal was caught here, or (multi-host runs under
    ``jax.distributed`` with its preemption service) every host reached the step at which JAX's
    preemption sync point says to save."""
    if self.signal_name is None and jax.process_count() > 1:
      try:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
        if multihost_utils.reached_preemption_sync_point(step):
          self.signal_name = "preemption notice"
      except RuntimeError:  # the preemption service is not running
        pass
    return self.signal_name is not None

  @property
  def requested(self) -> bool:
    return self.signal_name is not None

  @property
  def status(self) -> int:
    return EXIT_INTERRUPTED if self.signal_name == "SIGINT" else EXIT_PREEMPTED


@jax.jit
def _fold_finite(bad: jax.Array, first: jax.Array, values: tuple[jax.Array, ...],
                 step) -> tuple[jax.Array, jax.Array]:
  """:meth:`FiniteGuard.update` as one compiled call (eagerly, three dispatches per metric cost
  about a millisecond per training step)."""
  now = jnp.stack([~jnp.all(jnp.isfinite(v)) for v in values])
  return bad | now, jnp.where((first < 0) & jnp.any(now), jnp.int32(step), first)


class FiniteGuard:
  """Tracks, on the device, whether any metric of a stage has been non-finite, and from which
  chunk on; :meth:`check` reads it (one small transfer) and raises naming the stage, the step
  and the terms."""

  def __init__(self, stage: str):
    self.stage = stage
    self._keys: tuple[str, ...] | None = None
    self._bad = None  # (num keys,) bool: which metrics have been non-finite
    self._first = None  # the first chunk end at which any was

  def update(self, metrics: Mapping[str, jax.Array], step: int) -> None:
    """Folds in the metrics of the chunk ending at ``step`` (one asynchronous device call).  A
    stage's step variants report different metrics (stage 1's discriminators join after its
    warm-up): every key seen so far is tracked, one a chunk lacks counts as finite there."""
    if self._keys is None:
      self._keys, self._bad = (), jnp.zeros(0, bool)
      self._first = jnp.asarray(-1, jnp.int32)
    new = tuple(sorted(set(metrics) - set(self._keys)))
    if new:
      self._keys += new
      self._bad = jnp.concatenate([self._bad, jnp.zeros(len(new), bool)])
    values = tuple(metrics[k] if k in metrics else 0.0 for k in self._keys)
    self._bad, self._first = _fold_finite(self._bad, self._first, values, step)

  def check(self) -> None:
    """Raises :class:`NonFiniteError` if any metric has been non-finite."""
    if self._keys is None:
      return
    bad, first = jax.device_get((self._bad, self._first))
    if int(first) >= 0:
      terms = [k for k, b in zip(self._keys, np.asarray(bad)) if b]
      raise NonFiniteError(
          f"stage {self.stage}: non-finite values (NaN or Inf) by step {int(first)} in "
          f"{terms[:8]}{' ...' if len(terms) > 8 else ''}; stopped without saving them (the last "
          "good checkpoint is kept). Lower the learning rate or check the data, then re-run.")


class WorkdirLock:
  """``<workdir>/.lock`` held for the run: a second run on the same workdir is refused with the
  owner's host and pid; a lock left by a process that no longer exists (on this host) is taken
  over with a warning.  Only process 0 of a multi-host run locks."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, ".lock")
    self.held = False
    self.taken_over: dict | None = None

  def __enter__(self) -> WorkdirLock:
    if jax.process_index() != 0:
      return self
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      except FileExistsError:
        owner = self._owner()
        if owner.get("host") == me["host"] and not _alive(owner.get("pid")):
          self.taken_over = owner
          os.remove(self.path)
          continue
        raise RuntimeError(
            f"workdir {os.path.dirname(self.path)} is in use by another run (host "
            f"{owner.get('host', '?')}, pid {owner.get('pid', '?')}; lock file {self.path}). Wait "
            "for it, use another --workdir, or delete the lock file if that run is gone.") from None
      with os.fdopen(fd, "w") as f:
        json.dump(me, f)
      self.held = True
      return self
    raise RuntimeError(f"could not take the lock {self.path}")

  def __exit__(self, *exc) -> None:
    if self.held:
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass
      self.held = False

  def _owner(self) -> dict:
    try:
      with open(self.path) as f:
        return json.load(f)
    except (OSError, ValueError):
      return {}


def _alive(pid) -> bool:
  if not isinstance(pid, int) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


@contextlib.contextmanager
def background_failures_quiet():
  """While it is open, what the checkpointer's I/O threads report of a save that fails (a full
  disk) is dropped: each pending tensorstore callback's ``RuntimeError: Event loop is closed``
  (through ``sys.unraisablehook``), asyncio's "exception was never retrieved", and Orbax's own
  report of each of its threads; after a failed save, for the rest of the process (the failure
  ends the run).  The save's error itself still reaches the caller, in the main thread, once."""
  saved = (sys.unraisablehook, sys.excepthook)
  quiet_records = lambda record: threading.current_thread() is threading.main_thread()
  handlers = [logging.getLogger("absl")] + list(logging.getLogger().handlers)
  asyncio_log = logging.getLogger("asyncio")
  was_disabled = asyncio_log.disabled
  sys.unraisablehook = lambda args: None
  sys.excepthook = lambda kind, value, tb: None
  asyncio_log.disabled = True
  for h in handlers:
    h.addFilter(quiet_records)
  yield  # not in a ``finally``: after a failed save the threads go on failing
  sys.unraisablehook, sys.excepthook = saved
  asyncio_log.disabled = was_disabled
  for h in handlers:
    h.removeFilter(quiet_records)


def silence_background_threads() -> None:
  """Keeps threads that are still running from writing to the terminal while a failed run ends.

  A save that fails half-way (a full disk) leaves the checkpointer's I/O threads to fail after it,
  each with a traceback (``RuntimeError: Event loop is closed``), which would bury the one line
  that says what happened, or tear it.  Their exceptions are dropped from here on (the main
  thread's traceback, logged before, is the one that explains the failure)."""
  threading.excepthook = lambda args: None
  sys.unraisablehook = lambda args: None
  for name in ("asyncio", "concurrent.futures"):
    logging.getLogger(name).disabled = True


def fail_line(e: BaseException) -> str:
  """The end of a failed run's output: what happened (the exception's message, which may list
  several problems), starting on a line of its own."""
  return f"\njfesgan: failed: {type(e).__name__}: {e}\n"
