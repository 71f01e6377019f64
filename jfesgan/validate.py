"""The configuration checked up front, before any dataset is built, file written or network
trained: every problem at once, each naming the field's full path.

Each section's rules live beside the code that owns the section (``check_config`` in
:mod:`jfesgan.state` for optimisers, :mod:`jfesgan.steps` for the losses' options,
:mod:`jfesgan.models`, :mod:`jfesgan.data.pipeline`, :mod:`jfesgan.augment`); this module asks
each of them and adds the run-level fields.
"""

from __future__ import annotations

from jfesgan import augment, state, steps
from jfesgan import models as models_lib
from jfesgan.data import pipeline

RUN_FIELDS = ("batch_size", "log_every", "checkpoint_every", "sample_every", "steps_per_call")


def problems(config, plan) -> list[str]:
  """Every problem of ``config`` for the stages ``plan``, as ``config.<field>=<value> <rule>``."""
  found: list[str] = []

  def need(ok: bool, field: str, value, rule: str) -> None:
    if not ok:
      found.append(f"config.{field}={value!r} {rule}")

  for stage in plan:
    need(stage.steps(config) >= 0, f"{stage.name}.steps", stage.steps(config), "must be >= 0")
  for field in RUN_FIELDS:
    need(int(config[field]) >= 1, field, config[field], "must be >= 1")
  pipeline.check_config(config.data, need)
  found += models_lib.check_config(config, need)
  state.check_config(config, need)
  steps.check_config(config, need)
  found += augment.config_problems(config)
  return found


def validate(config, plan) -> None:
  """Raises ``ValueError`` listing every problem of ``config`` (:func:`problems`), if any."""
  found = problems(config, plan)
  if found:
    raise ValueError("invalid configuration:\n  " + "\n  ".join(found))


def check_data(config, plan, train) -> None:
  """Checks what needs the training data (``train``, an ArrayDataset): raised once it is loaded,
  before anything is written to the workdir."""
  learns_subjects = any(s.label_key == "subject" and s.steps(config) > 0 for s in plan)
  if (train.subject < 0).any() and (learns_subjects or config.fesgan.identity_weight > 0):
    raise ValueError(f"{config.data.name} has no subject ids, so there is no identity network to "
                     "train: set phi.steps=0 and fesgan.identity_weight=0 (configs/fer2013.py)")
  if config.batch_size > len(train):
    raise ValueError(f"config.batch_size={config.batch_size} is larger than the training set "
                     f"({len(train)} images of {config.data.name})")
