"""A recogniser pre-trained on FER2013, to start CK+ / Oulu-CASIA / MMI recognisers from
(``--config.real.init_from=<this run's workdir>``; the joint R follows, so every ablation row's R
starts alike):

  python -m jfesgan.main --config configs/pretrain_fer2013.py --workdir runs/pretrain_fer2013 \\
      --config.data.manual_dir=/path/to/fer2013

The judge's recipe (``configs/judge_fer2013.py``: stage ``real`` alone, 6,000 steps at batch 64)
with another seed, so the judge and the pre-trained recogniser are two networks.  They still learnt
from the same FER2013 images: once R starts from this run, R's loss in stage 2 carries FER2013's
features into the generator, and the judge's reading of the *joint* generator is no longer
independent; its reading of the stage-1 generator (which R never reaches) is.
"""

from configs import judge_fer2013


def get_config():
  c = judge_fer2013.get_config()
  c.seed = 1
  return c
