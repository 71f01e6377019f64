"""CK+48 with the stage-1 recipe chosen on validation subjects (issue 10), the folder as argument:

  jfesgan crossval --config configs/ck48.py:/path/to/CK+48 --ablation --workdir runs/ck48

``configs/expression_folder.py`` (CK+48's layout) with a longer, gentler stage 1 whose
discriminator sees augmented images: 4,000 FESGAN iterations (5x the default), ``adv_weight``
0.1, and differentiable augmentation of everything D_img sees (``fesgan.dimg_augment``:
DiffAugment).  The steps and the augmentation were chosen on validation subjects carved from the
training subjects of folds 0 and 1 (``results/ck48/validation/stage1_probe.json``).
``adv_weight`` 0.1 was NOT: it was first measured on test folds 0-3, before validation subjects
existed (docs/crossval.md, "Probe: ... adv_weight=0.1"), and has not been re-decided on CK+48's
validation subjects since; read every CK+48 table made with this config knowing that.  (It is
now also the default of every config, chosen on the embedded faces' validation subjects,
``results/procedural/generator_validation.md``.)  ``latent_weight`` stays 1.0 here: the default's
0.03 was chosen on the embedded faces (``results/procedural/generator_terms.md``) and is not
measured on CK+48, whose committed tables were made with 1.0; nor is the default's warm-up of
stage 1 (``fesgan.warmup``), so it is off here, nor its blurred upsampling with reconstruction
weight 30 (``model.g_upsample``, ``fesgan.rec_weight``), nor its expression weight 1 with a
moving average at 0.99 (``fesgan.expr_weight``, ``fesgan.ema_decay``): configs/database.py keeps
every database, this one included, at transposed convolutions, 10, 2 and no average.  About 30 minutes of
stage 1 per fold on 2 CPU cores, then ~2.5 minutes per joint row; the cross-validation resumes
where it stopped.

The recogniser (every row's R) is best started from one pre-trained on FER2013, chosen the same
way (``results/ck48/validation/recogniser/compare.md``): train ``configs/pretrain_fer2013.py``
once and add ``--config.real.init_from=<its workdir>`` (a path, so not fixed here).
"""

from configs import default, expression_folder


def get_config(folder: str = ""):
  c = expression_folder.get_config(folder)
  c.fesgan.steps = 4000
  c.fesgan.adv_weight = 0.1
  c.fesgan.latent_weight = 1.0
  c.fesgan.warmup.steps = 0
  c.fesgan.dimg_augment = default.augment(rotate=10.0, scale=0.1, shift=0.1, contrast=0.3,
                                          brightness=0.2)
  return c
