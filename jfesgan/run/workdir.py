"""A run's workdir: reading what a run wrote (its config, its summary, a stage's saved state), and
the rules for reusing it (resuming a stage, starting from another run's finished stages).

Stages are passed in as objects with ``name``, ``steps(config)`` and ``sections`` (the top-level
config fields that decide what the stage trains: :attr:`jfesgan.stages.Stage.sections`), so this
package sits below the plan and knows no stage by name.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
from absl import logging

from jfesgan import defaults
from jfesgan.run import checkpointing


def _run_file(workdir: str, kind: str) -> str:
  """``<workdir>/<kind>.json`` of a finished run; raises naming it when it is missing."""
  path = os.path.join(os.path.abspath(workdir), f"{kind}.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{os.path.abspath(workdir)}: no {kind}.json; not the workdir of a "
                            "finished jfesgan run")
  return path


def read_json(path: str) -> Any:
  """The JSON file ``path``; a file that is not valid JSON (truncated, overwritten) is a
  ``ValueError`` naming it and where it breaks."""
  try:
    with open(path, "rb") as f:
      return json.loads(f.read().decode("utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: not a valid JSON file ({e}); it was cut short or overwritten: "
                     "restore it, or train the run again") from e


def read_summary(workdir: str) -> dict[str, Any]:
  """The summary (scores, class names, paths, ``start_from``) of the finished run in
  ``workdir``; raises naming what is missing or unreadable."""
  path = _run_file(workdir, "summary")
  summary = read_json(path)
  if not isinstance(summary, dict):
    raise ValueError(f"{path}: not a jfesgan run summary (a JSON object)")
  return summary


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The configuration the run in ``workdir`` trained with; raises naming what is missing or
  unreadable."""
  path = _run_file(workdir, "config")
  config = read_json(path)
  if not isinstance(config, dict):
    raise ValueError(f"{path}: not a jfesgan run config (a JSON object)")
  return ml_collections.ConfigDict(config)


def warn_if_unreadable(path: str) -> None:
  """A warning naming ``path`` when it exists and is not valid JSON: a run that is about to
  write it again says that it replaces it, rather than replacing it silently."""
  if os.path.isfile(path):
    try:
      read_json(path)
    except ValueError as e:
      logging.warning("%s: not a valid JSON file (%s); this run writes it anew", path, e.__cause__)


def read_run(workdir: str) -> tuple[ml_collections.ConfigDict, tuple[str, ...]]:
  """(config, class names) of the run in ``workdir``; raises naming what is missing."""
  config = read_config(workdir)
  summary = read_summary(workdir)
  if "class_names" not in summary:
    raise ValueError(f"{_run_file(workdir, 'summary')}: no class_names: not the summary of a "
                     "finished jfesgan run")
  return config, tuple(summary["class_names"])


def restore_finished(workdir: str, stage: str, config) -> dict:
  """The saved final state of ``stage`` in ``workdir`` as a plain tree of arrays; raises when the
  stage did not run there or is not finished (never fresh random weights)."""
  steps = int(config[stage].steps)
  done = checkpointing.latest_step(workdir, stage)
  if done is None:
    raise FileNotFoundError(f"{workdir}: no checkpoint of stage {stage!r}; its stages were "
                            f"{list(config.stages)}")
  if done != steps:
    raise ValueError(f"{workdir}: stage {stage!r} is not finished (checkpoint step {done} of "
                     f"{steps})")
  ckpt = checkpointing.StageCheckpointer(workdir, stage)
  try:
    return jax.device_get(ckpt.restore_raw(done))
  finally:
    ckpt.close()


def as_dict(config) -> dict:
  """A ConfigDict as the plain JSON dict that ``config.json`` holds (tuples become lists)."""
  return json.loads(json.dumps(config.to_dict()))


def check_resume(stage, workdir: str, ours: dict, accept: bool) -> None:
  """Refuses to resume ``stage`` from checkpoints in ``workdir`` saved under another configuration
  of the fields it depends on (its own step count may change: a stage can be extended).  Creates
  nothing."""
  directory = os.path.join(workdir, "checkpoints", stage.name)
  path = os.path.join(directory, "config.json")
  if not os.path.isfile(path) or checkpointing.latest_step(workdir, stage.name) is None:
    return
  saved = read_json(path)
  diff = [d for d in diff_sections(saved, ours, stage.sections) if d != f"{stage.name}.steps"]
  if not diff:
    return
  if accept:
    logging.warning("stage %s: resuming under a changed configuration (%s), as asked", stage.name,
                    diff[:8])
    return
  raise ValueError(f"stage {stage.name}: {directory} was saved under another configuration "
                   f"(differs in {diff[:8]}{' ...' if len(diff) > 8 else ''}); use another "
                   "--workdir, or --accept_config_changes to resume anyway")


def start_from_stages(config, plan, workdir: str, start_from: str, *,
                      accept: bool = False) -> tuple[tuple[str, ...], dict[str, str]]:
  """Which stages of ``plan`` start from the finished checkpoints of workdir ``start_from``.

  A stage is taken from there when ``workdir`` has no checkpoint of it and ``start_from`` has its
  final step, trained under the same config fields the stage depends on (``stage.sections``).
  Returns the names taken and, for every other stage that ``start_from`` has, why it is not taken
  (it is trained here instead; nothing is mixed).  When no stage can be taken because every
  finished one was trained under another configuration, the run would ignore ``start_from``
  altogether: that is refused, naming the fields (``ValueError``), unless ``accept``
  (``--accept_config_changes``).
  """
  path = os.path.join(start_from, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"start_from={start_from!r} has no config.json: not a jfesgan workdir")
  theirs = read_json(path)
  ours = as_dict(config)
  taken, not_taken, changed = [], {}, set()
  for stage in plan:
    step = checkpointing.latest_step(start_from, stage.name)
    if step is None:
      continue
    if checkpointing.latest_step(workdir, stage.name) is not None:
      not_taken[stage.name] = f"{workdir} has a checkpoint of its own"
      continue
    diff = diff_sections(theirs, ours, stage.sections)
    if diff:
      not_taken[stage.name] = f"trained there with another configuration (differs in {diff[:8]})"
      changed.update(diff)
    elif step != stage.steps(config):
      not_taken[stage.name] = f"not finished there (step {step} of {stage.steps(config)})"
    else:
      taken.append(stage.name)
  if changed and not taken and not accept:
    fields = sorted(changed)
    raise ValueError(f"--start_from={start_from}: no stage can start from there: "
                     f"{sorted(not_taken)} were trained under another configuration (differs in "
                     f"{fields[:8]}{' ...' if len(fields) > 8 else ''}); use the config they were "
                     "trained with, or --accept_config_changes to train them here instead")
  return tuple(taken), not_taken


_ABSENT = object()


def _lookup(tree, path: str):
  for part in path.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return _ABSENT
    tree = tree[part]
  return tree


def diff_sections(a: dict, b: dict, keys, default: dict | None = None) -> list[str]:
  """Sorted dotted paths where two config dicts differ, within the top-level fields ``keys``.

  ``a`` is the saved (older) side: a field it lacks that ``b`` holds at its value in ``default``
  (:func:`jfesgan.defaults.as_before_added`: today's defaults, with the fields whose default
  changed what the code trains at the value older runs trained with) is a field added to the
  code since ``a`` was saved and left where it trains what ``a`` trained: not a difference."""
  default = as_dict(defaults.as_before_added()) if default is None else default
  paths = (d for k in keys for d in diff_paths(a.get(k), b.get(k), f"{k}."))
  return sorted(d for d in paths
                if not (_lookup(a, d) is _ABSENT and _lookup(default, d) is not _ABSENT
                        and _lookup(b, d) == _lookup(default, d)))


def diff_paths(a, b, prefix: str = "") -> list[str]:
  """Dotted paths where two nested dicts differ."""
  if not (isinstance(a, dict) and isinstance(b, dict)):
    return [] if a == b else [prefix.rstrip(".")]
  out = []
  for k in set(a) | set(b):
    out += diff_paths(a.get(k), b.get(k), f"{prefix}{k}.")
  return out
