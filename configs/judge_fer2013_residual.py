"""A judge of synthetic expressions of another architecture family: configs/judge_fer2013.py's
recipe (FER2013, stage `real` alone) with R built as a normalisation-free pre-activation ResNet
with global average pooling (``model.r_arch="residual"``, jfesgan/models/residual.py) instead of the
convolutional trunk that D_img, Phi and the default R share.  Networks of one family read each
other's cues; this judge shares no design with any network in the losses.

  python -m jfesgan.main --config configs/judge_fer2013_residual.py \\
      --workdir runs/judge_fer2013_residual --config.data.manual_dir=<FER2013 folder>
  ... --config.seed=2 --workdir runs/judge_fer2013_residual_s2

Given with the trunk family's judges (``--config.eval.judge=runs/judge_fer2013,...,
runs/judge_fer2013_residual,runs/judge_fer2013_residual_s2``), each family is read as its own
ensemble and reported apart: ``judge/*`` for the trunk family, ``judge_residual/*`` for this one
(docs/evaluation.md).
"""

from configs import judge_fer2013


def get_config():
  c = judge_fer2013.get_config()
  c.model.r_arch = "residual"
  return c
