"""The independent judge of synthetic expressions: a recogniser trained on FER2013 (stage `real`
alone, with the recogniser recipe of configs/default.py), then passed to runs on other databases
as ``--config.eval.judge=<this run's workdir>``.

  python -m jfesgan.main --config configs/judge_fer2013.py --workdir runs/judge_fer2013 \\
      --config.data.manual_dir=/path/to/fer2013

FER2013 is 28,709 training faces of thousands of people photographed in the wild, nothing like the
posed laboratory databases (CK+, Oulu-CASIA, MMI) the generator learns from: a generator cannot
satisfy this judge with cues peculiar to its own few hundred training faces.
"""

from configs import fer2013


def get_config():
  c = fer2013.get_config()
  c.stages = ("real",)
  c.batch_size = 64
  c.real.steps = 6000
  c.log_every = 200
  c.checkpoint_every = 2000
  return c
