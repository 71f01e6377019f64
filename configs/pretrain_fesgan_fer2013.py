"""Stage 1 (FESGAN) pre-trained on FER2013's faces without their expression labels, to start the
generator of CK+ / Oulu-CASIA / MMI runs from (``--config.fesgan.init_from=<this run's workdir>``):

  python -m jfesgan.main --config configs/pretrain_fesgan_fer2013.py \\
      --workdir runs/pretrain_fesgan_fer2013 --config.data.manual_dir=<FER2013 folder>
  jfesgan crossval --config configs/ck48.py:<CK+48 folder> --ablation --workdir runs/ck48_pre \\
      --config.fesgan.init_from=runs/pretrain_fesgan_fer2013

Label-free (``fesgan.expression_labels=False``): every face is drawn with the zero expression
code, and neither D_img's expression head nor the generator's expression term is trained, so
FER2013's labels never reach the generator and the FER2013 judges (``configs/judge_fer2013.py``)
stay independent of it.  What is learnt is the rest of stage 1: the encoder's identity code on the
prior (D_z), the decoder's faces (reconstruction, D_img's critic on reconstructions and new
identities).  FER2013 has no subject ids, so there is no identity network and no identity term
here (the target run has both).  The target run keeps its own expression conditioning to learn:
its decoder's expression layers (FiLM) start at their initialisation (zero kernels: the drawing
does not yet depend on the expression code).

The networks must have the target's shapes: 48x48 gray faces and the default ``model`` fields,
as ``configs/ck48.py`` has them.  8,000 iterations at batch 16 (4.5 passes over the 28,709 faces),
with CK+48's stage-1 recipe otherwise (``adv_weight`` 0.1, D_img's augmentation).  Not run in this
repository's results (FER2013 is not on its machines); its embedded-faces analogue is in
``results/procedural/generator_pretrain.md``.
"""

from configs import ck48, fer2013


def get_config():
  c = fer2013.get_config()
  recipe = ck48.get_config()
  c.stages = ("phi", "fesgan")
  c.phi.steps = 0
  c.fesgan = recipe.fesgan
  c.fesgan.steps = 8000
  c.fesgan.expression_labels = False
  c.fesgan.identity_weight = 0.0
  c.log_every = 200
  c.checkpoint_every = 2000
  c.sample_every = 2000
  return c
