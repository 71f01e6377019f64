"""Timing a train step as training runs it, with no JAX or PyTorch import (each framework's
timing process imports only its own).

A training loop calls its step back to back and waits for the device only now and then; so
:func:`as_training_runs` times rounds of back-to-back calls with one wait at the end of each,
after warm-up calls (the first compiles), in a process that runs nothing else.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any


def cpu_threads() -> int:
  """The CPUs this process may run on: XLA:CPU's thread pool size, and the thread count the
  benchmark gives PyTorch so that both frameworks use the same."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def as_training_runs(call: Callable[[], Any], sync: Callable[[Any], Any], steps: int = 10,
                     warmup: int = 3, rounds: int = 3) -> dict[str, Any]:
  """Seconds per step of ``call`` (which returns something ``sync`` waits for).

  ``warmup`` calls, each waited for (the first one's seconds, compilation included, are
  ``first_call_s``); then ``rounds`` rounds of ``steps`` calls back to back, waiting once at the
  end of each round; ``step_s`` is the median over rounds of a round's seconds per step.
  """
  if steps < 1 or warmup < 1 or rounds < 1:
    raise ValueError(f"steps, warmup and rounds must be >= 1, got {steps}, {warmup}, {rounds}")
  t = time.perf_counter()
  sync(call())
  first = time.perf_counter() - t
  for _ in range(warmup - 1):
    sync(call())
  per_step = []
  for _ in range(rounds):
    t = time.perf_counter()
    for _ in range(steps):
      out = call()
    sync(out)
    per_step.append((time.perf_counter() - t) / steps)
  return {"first_call_s": round(first, 3), "step_s": round(statistics.median(per_step), 5),
          "round_step_s": [round(x, 5) for x in per_step], "warmup": warmup, "steps": steps,
          "rounds": rounds}
