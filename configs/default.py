"""Default configuration: FESGAN (stages 0-1) on the embedded procedural faces, sized for a laptop.

Variants import this file and override a few fields; any field can also be set from the command
line, e.g. ``--config configs/joint.py --config.stage1.steps=500``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration."""
  c = ml_collections.ConfigDict()
  # Root seed: every random stream (init, batches, sampling) is derived from it by name.
  c.seed = 0
  # Global batch size (split over all devices; must be divisible by their number).
  c.batch_size = 16

  c.data = ml_collections.ConfigDict()
  # Dataset: 'procedural_faces' is embedded and generated on first use (no download).
  c.data.name = "procedural_faces"
  # TFDS data_dir; '' means TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR).
  c.data.data_dir = ""
  # Image side in pixels (32, 48, 64, 128 ...: divisible by 2**model.num_down) and channels (1 or 3).
  c.data.image_size = 48
  c.data.channels = 1
  # Procedural faces: identities, frames per (identity, expression), neutral class or not.
  c.data.num_identities = 120
  c.data.frames = 3
  c.data.include_neutral = False
  # Seed of the procedural renderer (which faces exist) and its difficulty knobs.
  c.data.data_seed = 0
  c.data.idiosyncrasy = 0.3
  c.data.au_noise = 0.12
  c.data.pixel_noise = 0.04
  # Subject-independent folds; `test_fold` is held out (identities never seen in training).
  c.data.num_folds = 10
  c.data.test_fold = 0
  c.data.fold_seed = 0
  # "folds" (subject-independent k-fold) or "official" (the database's own train/test splits).
  c.data.protocol = "folds"
  # Random horizontal flips of real training images.
  c.data.hflip = True

  c.model = ml_collections.ConfigDict()
  # Identity-code size d of E(x) and the prior U[-1, 1]^d.
  c.model.latent_dim = 64
  # Widths double at each of `num_down` stride-2 levels, from `width` up to `max_width`.
  c.model.width = 32
  c.model.max_width = 256
  c.model.num_down = 3
  # Embedding size of Phi and R.
  c.model.embed_dim = 64
  # Hidden widths of the latent discriminator D_z.
  c.model.dz_hidden = (256, 256)
  # Convolution implementation: 'auto' (matmul on CPU, XLA conv on GPU/TPU), 'matmul' or 'xla'.
  c.model.conv_impl = "auto"

  # Optimisers, one per stage: optimizer "adam" or "sgd" (momentum b1), learning rate, betas,
  # global-norm gradient clipping (0 = none).
  c.phi = ml_collections.ConfigDict(dict(optimizer="adam", lr=1e-3, b1=0.9, b2=0.999, grad_clip=0.0, steps=300))
  c.g = ml_collections.ConfigDict(dict(optimizer="adam", lr=2e-4, b1=0.5, b2=0.999, grad_clip=0.0))
  c.dimg = ml_collections.ConfigDict(dict(optimizer="adam", lr=2e-4, b1=0.5, b2=0.999, grad_clip=0.0))
  c.dz = ml_collections.ConfigDict(dict(optimizer="adam", lr=2e-4, b1=0.5, b2=0.999, grad_clip=0.0))

  c.r = ml_collections.ConfigDict(dict(optimizer="adam", lr=3e-4, b1=0.9, b2=0.999, grad_clip=0.0))

  # Stage 1 (FESGAN).
  c.stage1 = ml_collections.ConfigDict()
  c.stage1.steps = 1200
  # Discriminator steps per generator step.
  c.stage1.n_critic = 1
  # D_img: WGAN-GP penalty weight, drift (E[D(real)^2]) weight, real-image expression CE weight.
  c.stage1.gp_weight = 10.0
  c.stage1.drift_weight = 1e-3
  c.stage1.dimg_cls_weight = 3.0
  # Generator term weights (see steps.generator_terms).
  c.stage1.adv_weight = 1.0
  c.stage1.latent_weight = 1.0
  c.stage1.expr_weight = 2.0
  c.stage1.rec_weight = 10.0
  c.stage1.identity_weight = 5.0
  c.stage1.tv_weight = 0.0

  # Stage 2 (joint learning of the recogniser R and the generator).
  c.stage2 = ml_collections.ConfigDict()
  c.stage2.steps = 500
  # Synthetic images for R: "prior" (new identities G(z_p, c_p)) and/or "translation" (the real
  # batch re-drawn with other expressions, G(E(x), c_t)), split evenly; `syn_ratio` synthetic
  # images per real image.
  c.stage2.synthetic = ("prior", "translation")
  c.stage2.syn_ratio = 1.0
  # L_R = CE(real) + syn_weight * CE(synthetic) + intra_weight * L_intra.
  c.stage2.syn_weight = 1.0
  c.stage2.intra_weight = 0.01
  # Intra-class loss: "rdbp" (real-data-guided back-propagation), "plain" or "none".
  c.stage2.intra_mode = "rdbp"
  # L_G = stage-1 generator terms (if `generator_terms`) + beta * (CE(synthetic) + intra_weight *
  # L_intra): R's loss reaches the generator through the synthetic images.
  c.stage2.beta = 0.5
  c.stage2.generator_terms = True
  # False freezes the stage-1 generator (R learns from its images: offline augmentation).
  c.stage2.update_generator = True
  # Keep training D_img and D_z in stage 2.
  c.stage2.train_discriminators = True
  # EMA decay of R's running real class centres.
  c.stage2.centre_decay = 0.9
  # Start R's trunk from Phi's (a face-pretrained start).
  c.stage2.init_r_from_phi = False

  # Evaluation: a recogniser trained on real images only judges the synthetic expressions.
  c.eval = ml_collections.ConfigDict()
  c.eval.r = ml_collections.ConfigDict(dict(optimizer="adam", lr=3e-4, b1=0.9, b2=0.999, grad_clip=0.0, steps=800))
  # New identities drawn from the prior for the expression-accuracy score.
  c.eval.num_prior_samples = 512
  # Rows of held-out identities and of new identities in the sample grids.
  c.eval.grid_rows = 6
  c.eval.batch_size = 256

  # Logging and checkpointing (in steps of the running stage).
  c.log_every = 50
  c.checkpoint_every = 500
  c.sample_every = 500
  # Stages to run, in order.
  c.stages = ("phi", "fesgan")
  return c
