"""The independent judge of synthetic expressions: a recogniser trained on FER2013 (stage `real`
alone, with the recogniser recipe of configs/default.py), then passed to runs on other databases
as ``--config.eval.judge=<this run's workdir>``.

  python -m jfesgan.main --config configs/judge_fer2013.py --workdir runs/judge_fer2013 \\
      --config.data.manual_dir=/path/to/fer2013

One judge's reading is noisy (two seeds of this recipe read the same translations up to 14
points apart): the judge of the CK+48 results from 2026-11-30 on is the ensemble of three,
``--config.eval.judge=runs/judge_fer2013,runs/judge_fer2013_s2,runs/judge_fer2013_aug``, where

  ... --config.seed=2 --workdir runs/judge_fer2013_s2
  ... --config.seed=1 --config.real.augment.rotate=10 --config.real.augment.scale=0.1 \\
      --config.real.augment.shift=0.1 --config.real.augment.contrast=0.3 \\
      --config.real.augment.brightness=0.2 --config.real.optimizer.schedule=cosine \\
      --config.real.optimizer.warmup=200 --workdir runs/judge_fer2013_aug

(seed 1 without augmentation is ``configs/pretrain_fer2013.py``, the recogniser's pre-trained
start: never a judge of runs that start from it).

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
