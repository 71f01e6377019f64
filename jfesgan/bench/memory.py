"""Resident-memory readings for the benchmark's probes, with no JAX or PyTorch import (each
framework's probe process imports only its own)."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from typing import Any


def current_rss_mb() -> float:
  """This process's resident set now, MB."""
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def host_peak_mb() -> float:
  """The high-water mark of this process's resident set, MB (VmHWM: ``ru_maxrss`` would carry
  the parent's over fork + exec)."""
  try:
    with open("/proc/self/status") as f:
      return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
  except (OSError, StopIteration):
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
  """Resets the high-water mark (Linux: /proc/self/clear_refs); False where it cannot."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def probe(call: Callable[[], Any], peak: Callable[[], float] = host_peak_mb,
          resettable: bool = True,
          after_first: Callable[[], Any] | None = None) -> dict[str, float]:
  """Memory (MB) around ``call``: resident before it, the peak of its first call (compilation
  included) and, where the peak can be reset, the peak of three more calls alone (what the step
  itself holds); ``peak_mb`` is the whole process's.  ``after_first`` runs after the first call,
  as the training loop does after compiling (:func:`jfesgan.host.release_free_memory`)."""
  before = current_rss_mb()
  call()
  if after_first is not None:
    after_first()
  out = {"before_mb": round(before, 1), "first_call_peak_mb": round(peak(), 1)}
  reset = resettable and reset_peak()
  for _ in range(3):
    call()
  out["peak_mb"] = round(peak(), 1)
  if reset:
    out["step_peak_mb"] = out["peak_mb"]
    out["peak_mb"] = max(out["first_call_peak_mb"], out["step_peak_mb"])
  return out
