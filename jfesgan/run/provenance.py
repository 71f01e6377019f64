"""Where a result came from: the commit of the code that made it, and content fingerprints of the
networks that scored it (a judge retrained under the same path is another judge)."""

from __future__ import annotations

import hashlib
import os
import subprocess

import jax
import numpy as np


def commit() -> str:
  """The commit of the code that made a result (with ``+changes`` when tracked files differ from
  it), or 'unknown' outside a git checkout."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"
  return head + ("+changes" if dirty else "")


def params_fingerprint(params) -> str:
  """A fingerprint of a network's parameters by content: every leaf's path, dtype, shape and
  bytes (12 hex digits of SHA-1).  Equal for the same weights wherever they are stored; any
  change of a value, a shape or a name makes another."""
  h = hashlib.sha1()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}\0".encode())
    h.update(a.tobytes())
  return h.hexdigest()[:12]
