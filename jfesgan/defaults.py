"""The default configuration: every field, with a comment above it.  Stages ``phi``, ``fesgan``
and ``real`` on the embedded procedural faces, sized for a laptop.

``configs/default.py`` re-exports this module for the config files (variants import it and
override a few fields); the library reads it from here, to tell a field added to the code since
a run was saved (absent from that run's ``config.json``, at its default here) from a changed one.
Any field can also be set from the command line, e.g. ``--config configs/joint.py
--config.fesgan.steps=500``.  Each stage of the plan (``jfesgan/stages.py``) has a section named
like it, holding its own ``steps`` and optimiser.
"""

import ml_collections


def optimizer(lr: float, b1: float, b2: float = 0.999, name: str = "adam", grad_clip: float = 0.0,
              weight_decay: float = 0.0, schedule: str = "constant",
              warmup: int = 0) -> ml_collections.ConfigDict:
  """An optimiser section: ``name`` "adam" (AdamW when weight_decay > 0) or "sgd" (momentum b1),
  learning rate, betas, global-norm gradient clipping (0 = none), decoupled weight decay, and the
  learning-rate schedule: "constant" or "cosine" (to 0 over the updates the player makes in a
  stage: the stage's steps; g's in stage 1 are every ``fesgan.n_critic``-th, and the stage-1
  players' sections serve stage 2 over its steps), after a linear warmup of ``warmup`` updates."""
  return ml_collections.ConfigDict(dict(name=name, lr=lr, b1=b1, b2=b2, grad_clip=grad_clip,
                                        weight_decay=weight_decay, schedule=schedule,
                                        warmup=warmup))


def augment(rotate: float = 0.0, scale: float = 0.0, shift: float = 0.0, contrast: float = 0.0,
            brightness: float = 0.0, noise: float = 0.0) -> ml_collections.ConfigDict:
  """An augmentation section (jfesgan/augment.py): per-image random ranges, and the standard
  deviation of added Gaussian pixel noise; 0 = off."""
  return ml_collections.ConfigDict(dict(rotate=rotate, scale=scale, shift=shift,
                                        contrast=contrast, brightness=brightness, noise=noise))


def tied(section: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A section whose every field is a reference to ``section``'s: setting a field of either sets
  both."""
  return ml_collections.ConfigDict({k: section.get_ref(k) for k in section.keys()})


def listed(entries) -> tuple[str, ...]:
  """The names a tuple field lists, as written (``("phi", "fesgan")``, or the one string
  ``"phi,fesgan"`` that ``--config.stages=phi,fesgan`` gives), unchecked."""
  return tuple(n.strip() for entry in entries for n in str(entry).split(",") if n.strip())


def stage_names(config) -> tuple[str, ...]:
  """The stage names ``config.stages`` lists (:func:`listed`), unchecked:
  :func:`jfesgan.stages.select` checks them against the plan."""
  return listed(config.get("stages", ()))


# Fields added to the code whose default is NOT what runs saved before them trained: the value
# such a run trained with.  A saved config that lacks one of these compares as holding this
# value, not today's default (jfesgan.run.workdir.diff_sections: resuming and start_from); a
# field added at the value that reproduces the older code needs no entry.
BEFORE_ADDED = {"fesgan.warmup.steps": 0, "model.g_upsample": "transpose",
                "fesgan.warmup.d_steps": -1}


def as_before_added() -> ml_collections.ConfigDict:
  """Today's defaults with every field of :data:`BEFORE_ADDED` at the value that runs saved
  before the field existed trained with."""
  c = get_config()
  for path, value in BEFORE_ADDED.items():
    *parents, leaf = path.split(".")
    section = c
    for p in parents:
      section = section[p]
    section[leaf] = value
  return c


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration."""
  c = ml_collections.ConfigDict()
  # Root seed: every random stream (init, batches, sampling) is derived from it by stage.
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
  # What a run is scored on: "test" (the held-out fold / test split) or "validation" (subjects
  # carved out of the training subjects, or the database's validation split): choose recipes,
  # step counts and weights on "validation", never on "test".
  c.data.heldout = "test"
  # Random horizontal flips of real training images.
  c.data.hflip = True

  c.model = ml_collections.ConfigDict()
  # Identity-code size d of E(x) and the prior U[-1, 1]^d.
  c.model.latent_dim = 64
  # Widths double at each of `num_down` stride-2 levels, from `width` up to `max_width`.
  c.model.width = 32
  c.model.max_width = 256
  c.model.num_down = 3
  # The generator's own capacity (E and G): its first width (0: model.width; it doubles per level
  # up to max_width as the others do) and the 3x3 convolutions added at each level (0: none).
  c.model.g_width = 0
  c.model.g_depth = 0
  # The decoder's 2x upsampling: 'transpose' (4x4 stride-2 transposed convolutions), 'resize'
  # (nearest neighbour + 3x3 convolution, no checkerboard artefacts; the same cost) or 'blur'
  # (the transposed convolution, then a fixed [1, 2, 1] blur: its free taps kept, no checkerboard;
  # synth/lattice measures a grid).  'blur' (was 'transpose'), with fesgan.rec_weight 30, chosen
  # on validation subjects of the embedded faces, seeds 0 and 1
  # (results/procedural/generator_upsample.md): against 'transpose' at rec_weight 10, translation
  # PSNR +0.79 / +1.07 dB, reconstruction L1 -0.008 / -0.010, the change made +0.06, the target
  # read by the in-domain R +9 / +19 points, new identities +16 / +14, and no lattice
  # (synth/lattice -0.2 / -0.2 dB against 9.7 / 9.9), all on both seeds; the person kept by Phi
  # -7.2 / -9.5 points, by pixels +1.0 / -4.0.  Its price on CPU: the generator update
  # +30-50 % at 48 px (docs/performance.md).  Real databases' configs (configs/database.py,
  # configs/ck48.py) keep 'transpose' and rec_weight 10: not measured there.
  c.model.g_upsample = "blur"
  # How a translation is made (jfesgan/models/generator.py): "none", the paper's shape, re-draws
  # it, x_t = G(E(x), c); "mask" edits the input through a mask the decoder draws,
  # x_t = m * G + (1 - m) * x (fesgan.mask_weight keeps the edits small); "difference" adds to the
  # input the change the decoder draws from the input's expression, as the encoder estimates it,
  # to c: x_t = x + G(E(x), c) - G(E(x), s(x)) (fesgan.source_weight trains the estimate).  New
  # identities are the decoder's full drawing with any of them.
  c.model.g_edit = "none"
  # Embedding size of Phi and R.
  c.model.embed_dim = 64
  # R's architecture family (jfesgan/models/recogniser.py): "trunk", the convolutional trunk that
  # D_img and Phi share (R can start from Phi's), or "residual", a normalisation-free
  # pre-activation ResNet with global average pooling, for judges of synthesis of another family
  # than every network in the losses (configs/judge_fer2013_residual.py).
  c.model.r_arch = "trunk"
  # Hidden widths of the latent discriminator D_z.
  c.model.dz_hidden = (256, 256)
  # Convolution implementation (jfesgan/models/layers.py): 'auto' picks 'xla' on GPU/TPU and
  # 'phase' on CPU; or force one of 'xla', 'phase', 'matmul' everywhere.
  c.model.conv_impl = "auto"
  # Compute dtype of the activations: "float32", or "bfloat16" for GPUs and TPUs (parameters,
  # optimiser states, normalisation statistics and losses stay float32). On CPU XLA convolves
  # bfloat16 in float32 between casts, even on CPUs with AVX-512 BF16: as fast or slower
  # (docs/performance.md).
  c.model.dtype = "float32"

  # Stage `phi` (stage 0): the identity network Phi learns the training subjects.
  c.phi = ml_collections.ConfigDict()
  c.phi.steps = 300
  c.phi.optimizer = optimizer(1e-3, 0.9)

  # Stage `fesgan` (stage 1): encoder + decoder (g), image and latent discriminators.
  c.fesgan = ml_collections.ConfigDict()
  # 4,000 iterations (was 3,800; 2,000 and 1,200 before) with the warm-up's 3,400 and its
  # discriminators' last 400 (below): 600 full iterations after the warm-up.
  c.fesgan.steps = 4000
  # Discriminator steps per generator step.
  c.fesgan.n_critic = 1
  # D_img's adversarial loss: "wgan_gp" (METHOD.md: Wasserstein + gradient penalty + drift) or
  # "r1" (non-saturating + R1 penalty on real images, r1_weight = gamma / 2).
  c.fesgan.gan_loss = "wgan_gp"
  c.fesgan.r1_weight = 5.0
  # D_img: WGAN-GP penalty weight, drift (E[D(real)^2]) weight, real-image expression CE weight.
  c.fesgan.gp_weight = 10.0
  c.fesgan.drift_weight = 1e-3
  c.fesgan.dimg_cls_weight = 3.0
  # Generator term weights (see steps.generator_terms).  adv_weight 0.1 (was 1.0) was chosen on
  # validation subjects of the embedded faces, seeds 0 and 1
  # (results/procedural/generator_validation.md): translation PSNR +1.5 dB, person kept +15 points
  # by Phi and +10 by pixels, reconstruction L1 -0.024, all on both seeds; the expression scores
  # better on one seed and within 0.005 on the other.
  c.fesgan.adv_weight = 0.1
  # The latent term (D_z on E(x)) at 0.03 (was 1.0), chosen among 1.0, 0.1 and 0.03 on validation
  # subjects of the embedded faces, seeds 0 and 1 (results/procedural/generator_terms.md): against
  # 1.0, translation PSNR +2.8 / +2.4 dB, person kept +32 / +12 points by Phi and +28 / +15 by
  # pixels, reconstruction L1 -0.044 / -0.036; the change made 0.04 smaller, the in-domain R
  # reading the target +2 / -11 points, new identities a little less diverse (+0.015 / +0.009
  # mean Phi similarity), on both seeds.  CK+48's recipe keeps 1.0 (configs/ck48.py).
  c.fesgan.latent_weight = 0.03
  # expr_weight 1.0 (was 2.0) with ema_decay 0.99 (below), chosen together on validation subjects
  # of the embedded faces, four seeds paired (results/procedural/generator_probes_latent.md):
  # translation PSNR +0.66 dB (+0.50 to +0.83), the person by Phi +3.5 points (+3.2 to +3.9),
  # reconstruction L1 -0.0046, all four seeds, for 4 % less of the change made (-0.024) and the
  # new identities read -3.5 points.  Each alone is a trade (the term alone: more person, less
  # change; the average alone: the opposite).  The real databases keep 2.0 (configs/database.py).
  c.fesgan.expr_weight = 1.0
  # rec_weight 30 (was 10) with model.g_upsample='blur' (see there), chosen among 10, 20, 30 and
  # 50: each step up adds PSNR and reconstruction on both seeds; 30 against 20 +0.41 / +0.43 dB and
  # the person by pixels +1.2 / +0.8 for -0.004 / -0.004 of the change made; 50 against 30 +0.5 /
  # +0.2 dB for less change (-0.012 / -0.006), less diverse new identities and the person by Phi
  # -5.3 / +1.5.
  c.fesgan.rec_weight = 30.0
  c.fesgan.identity_weight = 5.0
  c.fesgan.tv_weight = 0.0
  # With model.g_edit: the mean edit mask of translations (edit where the expression lives only).
  c.fesgan.mask_weight = 0.1
  # With model.g_edit="difference": cross-entropy of the encoder's estimate of a real face's
  # expression against its label (it trains the encoder only).
  c.fesgan.source_weight = 1.0
  # Cycle consistency (an option beyond METHOD.md; 0 = off, the paper's terms): L1 between the
  # input and its translation translated back to the input's expression, through the encoder
  # again (one more encoder and decoder pass per generator step when > 0).  At 10 on validation
  # subjects (results/procedural/generator_options.md): PSNR, reconstruction and the in-domain
  # reading of the target better on both seeds, the person kept no better: not the default.
  # At today's default, four seeds (results/procedural/generator_cycle.md): +0.18 dB PSNR and
  # +0.4 points of the person by pixels, -0.007 of the change made, stage 1 +5 %; at 30 about
  # twice each (+0.42 dB, +0.9 points, -0.018): still off.
  c.fesgan.cycle_weight = 0.0
  # The code's expression term (an option beyond METHOD.md; 0 = off): D_z gains a classifier of
  # the expression of E(x) (trained on the labels, weight dz_cls_weight in D_z's loss), and the
  # encoder is trained to leave it guessing (KL from the uniform distribution), so that the code
  # holds the person and the decoder must draw the expression from its expression code, also in a
  # reconstruction-only warm-up (name code_expr in warmup.terms).  A Fader network's latent
  # adversary (Lample et al. 2017); docs/method.md.
  c.fesgan.code_expr_weight = 0.0
  c.fesgan.dz_cls_weight = 1.0
  # Whether stage 1 learns from the expression labels.  False (label-free pre-training on a large
  # face collection whose labels must never reach the generator, so that judges trained on those
  # labels stay independent of it): every image is drawn with the zero expression code (a
  # translation is then the reconstruction), and D_img's expression cross-entropy and the
  # generator's expression term are dropped.  Stage 2 needs the labels.
  c.fesgan.expression_labels = True
  # Pre-training: the workdir of a finished stage-1 run (on another, larger collection, e.g.
  # configs/pretrain_fesgan_fer2013.py) whose networks start this one's: g and g_ema from its
  # g_ema, D_z whole, D_img's trunk and critic, and its expression head's rows of the classes
  # both know when that run learnt them.  Shapes must match (model.*, data.image_size,
  # data.channels).  '' = random initialisation.
  c.fesgan.init_from = ""
  # Decay of the generator's moving average g_ema (it samples, is scored and starts stage 2),
  # ramped up as min(decay, (1 + t) / (10 + t)) over the generator's updates t; 0 = g_ema is g.
  # 0.99 (was 0) with expr_weight 1.0: see there.  The real databases keep 0 (configs/database.py).
  c.fesgan.ema_decay = 0.99
  # Differentiable augmentation of everything D_img sees, real and synthetic, in both players'
  # losses (DiffAugment): the critic and its expression head cannot lean on pixel-exact cues of
  # a few hundred training faces, and the generator must draw what survives a small warp.
  c.fesgan.dimg_augment = augment()
  # One optimiser per player; stage `joint` continues them with the same settings (fresh moments).
  c.fesgan.optimizer = ml_collections.ConfigDict(dict(
      g=optimizer(2e-4, 0.5), dimg=optimizer(2e-4, 0.5), dz=optimizer(2e-4, 0.5)))
  # A warm-up of the encoder and decoder inside stage 1: its first `steps` iterations (counted in
  # fesgan.steps) train g on the generator terms `terms` alone (the reconstruction term alone
  # since later on 2026-12-07, below; rec and identity before), with an optimiser of its own;
  # the discriminators step in its last `d_steps` iterations (below).  Then the other terms join
  # and fesgan.optimizer.g takes over with fresh moments (its schedule spans the updates left).
  # 0 = no warm-up (the paper's stage 1).
  # 800 of 1,200 (with the discriminators in every iteration) was chosen among
  # 0, 400, 600, 800 and 1,000 on validation subjects of the embedded faces, seeds 0 and 1
  # (results/procedural/generator_warmup.md): against none, translation PSNR +0.41 / +0.83 dB,
  # the person kept by pixels +6.8 / +11.4 points, reconstruction L1 -0.004 / -0.009, by Phi
  # -0.1 / +1.6; the change made -0.011 / -0.017 and the target read -2 / -4 points; against
  # 600 and 1,000 better on PSNR and reconstruction on both seeds.  Its price: new identities'
  # requested expression is read far less often (the in-domain R 38.7 % against 58.8 %);
  # warmup.terms=("rec", "identity", "expr") keeps most of it (53.2 %) for about half the
  # translations' gain.  Real databases' configs (configs/database.py, configs/ck48.py) keep 0:
  # not measured there.
  # warmup.terms: some of steps.WARMUP_TERMS (adv or expr among them run D_img in g's loss).
  # warmup.d_steps: D_img and D_z step in the warm-up's last d_steps iterations (and in every one
  # after it); the iterations before are the generator's warm-up step alone, about half an
  # iteration's time on CPU (D_z steps there too where their terms read it: latent; D_z's step
  # is small beside the generator's).  -1 (or a count as long as the warm-up): they step in every
  # iteration, the paper's stage 1 and this default before 2026-12-07.  1,600 warm-up iterations
  # of 2,000 with d_steps 400 (was 800 of 1,200, D in all), chosen on validation subjects of the
  # embedded faces, four seeds paired (results/procedural/generator_d_steps.md): the person by
  # pixels +3.2 points (95 % interval +1.0 to +5.4, all four seeds), the target read by the
  # in-domain R +5.8 (-2.5 to +14.0, all four), PSNR +0.22 dB (-0.33 to +0.76), the person by Phi
  # -0.2 (-4.1 to +3.6); stage 1 about a quarter longer.  The same at about the old time (1,200 of
  # 1,600, d_steps 400) made more of the change (+0.037, +0.005 to +0.070) for the person by Phi
  # (-2.3, -3.8 to -0.8).
  # Since 2026-12-07 (later): 3,400 warm-up iterations of 3,800 on the reconstruction term alone
  # (was 1,600 of 2,000 on rec and identity; d_steps 400 both), the identity term joining with the
  # adversarial ones after the warm-up.  A warm-up step on rec alone draws x_rec alone and runs no
  # Phi, about 3x cheaper, so stage 1 takes about a third less time for 1,800 more iterations.
  # Chosen on validation subjects, four seeds paired (results/procedural/generator_solo.md): PSNR
  # +0.40 dB (95 % interval +0.23 to +0.57), the person by pixels +1.7 points (+0.3 to +3.2),
  # reconstruction L1 -0.0037 (-0.0050 to -0.0026), the change made +0.014 (+0.006 to +0.023), all
  # on four seeds of four; the target read +3.6 (-5.6 to +12.8); the person by Phi -1.8 (-4.6 to
  # +1.0, lower on every seed) and new identities read -1.8 (-6.6 to +3.0), inside seed noise.
  # warmup.solo_terms: the warm-up's terms in its iterations before the discriminators start (the
  # generator's step alone); empty: warmup.terms there too.  rec alone there and rec and identity
  # in the warm-up's last 400 (3,000 of 3,400): PSNR +0.15 (-0.05 to +0.35), the person by pixels
  # +1.2 (+0.4 to +2.0), by Phi -0.7 (-2.1 to +0.8): between the two; an option.
  # Since 2026-12-07 (evening): the warm-up on rec and latent (was rec alone), D_z stepping with it
  # from the first iteration (jfesgan.steps.latent_discriminator_update), and 600 full iterations
  # after it (was 400).  In the rec-only warm-up the encoder's codes never met the prior, so the
  # decoder drew blotches from the prior's codes until the last 400 iterations; with D_z in the
  # game throughout, new identities are faces.  Chosen on validation subjects, four seeds paired
  # against 3,400 of 3,800 on rec alone (results/procedural/generator_latent_warmup.md): new
  # identities' requested expression read +14.2 points (all four seeds) and their mean Phi
  # similarity -0.027 (more diverse, all four); the translations a little worse: PSNR -0.18 dB
  # and the change made -0.018 (all four), the person by Phi -1.1 and by pixels -0.2 points
  # (inside seed noise).  The latent warm-up alone (3,400 of 3,800) trades more of the person
  # (PSNR -0.48 dB, by Phi -6.5 points) for new identities; 200 more full iterations alone
  # (two seeds) win PSNR and the person for less change.
  c.fesgan.warmup = ml_collections.ConfigDict(dict(steps=3400, optimizer=optimizer(1e-3, 0.9),
                                                   terms=("rec", "latent"), d_steps=400,
                                                   solo_terms=()))

  # Stage `real`: a recogniser trained on real images only, the real-only baseline and the judge
  # of synthetic expressions.
  c.real = ml_collections.ConfigDict()
  c.real.steps = 800
  c.real.optimizer = optimizer(3e-4, 0.9)
  # On-device augmentation of the recogniser's input images (jfesgan/augment.py), on top of
  # data.hflip.
  c.real.augment = augment()
  # Pre-training: the workdir of a finished stage-`real` run on another, larger database (e.g.
  # configs/pretrain_fer2013.py) whose recogniser starts this one (trunk, and the head rows of the
  # classes both know); '' = random initialisation.  Tied to joint.init_from: every ablation row's
  # R starts alike.
  c.real.init_from = ""
  # A control, not one of METHOD.md's rows: the intra-class loss on the real features alone (a
  # centre loss, L = CE + intra_weight * L_intra; with no synthetic images rdbp and plain are one
  # loss), so that the joint rows' gain can be told from what the loss does without synthesis.
  # 0 = cross-entropy only, the real-only baseline.
  c.real.intra_weight = 0.0

  # Stage `joint` (stage 2): the recogniser R learnt jointly with the generator.
  c.joint = ml_collections.ConfigDict()
  c.joint.steps = 500
  # R's optimiser and augmentation (the stage-1 players keep their optimisers, c.fesgan.optimizer):
  # tied to the real-only recogniser's, so one recipe trains R in every ablation row; setting a
  # field of either section sets both.
  c.joint.optimizer = tied(c.real.optimizer)
  c.joint.augment = tied(c.real.augment)
  # Synthetic images for R: "prior" (new identities G(z_p, c_p)) and/or "translation" (the real
  # batch re-drawn with other expressions, G(E(x), c_t)), split evenly; `syn_ratio` synthetic
  # images per real image.
  c.joint.synthetic = ("prior", "translation")
  c.joint.syn_ratio = 1.0
  # L_R = CE(real) + syn_weight * CE(synthetic) + intra_weight * L_intra.
  c.joint.syn_weight = 1.0
  c.joint.intra_weight = 0.01
  # Intra-class loss: "rdbp" (real-data-guided back-propagation), "plain" or "none".
  c.joint.intra_mode = "rdbp"
  # L_G = stage-1 generator terms (if `generator_terms`) + beta * (CE(synthetic) + intra_weight *
  # L_intra): R's loss reaches the generator through the synthetic images.
  c.joint.beta = 0.5
  c.joint.generator_terms = True
  # False freezes the stage-1 generator (R learns from its images: offline augmentation).
  c.joint.update_generator = True
  # Keep training D_img and D_z in stage 2.
  c.joint.train_discriminators = True
  # The intra-class loss on unit-length features (it then cannot drift with the features' scale).
  c.joint.intra_normalise = False
  # EMA decay of R's running real class centres.
  c.joint.centre_decay = 0.9
  # Start R's trunk from Phi's (a face-pretrained start).
  c.joint.init_r_from_phi = False
  # R's pre-trained start (a reference to real.init_from: setting either sets both).
  c.joint.init_from = c.real.get_ref("init_from")

  # Evaluation on the held-out subjects.
  c.eval = ml_collections.ConfigDict()
  # New identities drawn from the prior for the expression-accuracy score.
  c.eval.num_prior_samples = 512
  # Rows of held-out identities and of new identities in the sample grids.
  c.eval.grid_rows = 6
  c.eval.batch_size = 256
  # The independent judge of synthetic expressions: the workdir of a finished stage-`real` run on
  # ANOTHER database (configs/judge_fer2013.py), or several, comma-separated, read as one (mean of
  # their probabilities); '' = no judge/* scores.
  c.eval.judge = ""

  # Steps per jitted call: K > 1 runs K steps as one lax.scan over the dataset kept on the
  # devices (no Python dispatch or host transfers between them); 1 = one step per call.  The same
  # batches and results either way.  For GPU/TPU (e.g. 50); on CPU the scan is unrolled (XLA:CPU
  # runs convolutions in loops slowly), which buys little and compiles K copies of each step.
  c.steps_per_call = 1
  # Compile every stage's step at the start, in a background thread, while the earlier stages
  # train (jfesgan/ahead.py; needs the persistent compilation cache, on by default, and
  # steps_per_call = 1).  The same programs and results either way (each stage loads the program
  # compiled ahead from the cache).  Off: on 2 CPU cores the compiler and the training share the
  # cores, and the main job took as long with it (457.2 vs 457.3 s, docs/performance.md); where
  # the steps run on an accelerator the host's cores are free to compile.
  c.compile_ahead = False
  # Logging and checkpointing (in steps of the running stage).
  c.log_every = 50
  c.checkpoint_every = 500
  c.sample_every = 500
  # Stages to run (a subset of jfesgan.stages.PLAN, run in the plan's order; each needs the
  # stages it builds on).
  c.stages = ("phi", "fesgan", "real")
  return c
