"""Pure step functions: ``(state(s), batch, rng, *, collaborators) -> (new state(s), metrics)``.

Loss functions take the parameters of every network as one dict ``{'g', 'dimg', 'dz', 'phi'}``
so that tests can differentiate each loss term with respect to every network and check that it
reaches exactly the parameters it is meant to train; a step differentiates only with respect to
the players it updates.  Loss weights and options arrive as frozen dataclasses built once from the
config (:class:`FesganLoss`, :class:`JointLoss`).  Metrics are flat ``{"stage/name": scalar}`` dicts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jfesgan import losses
from jfesgan.augment import Augment
from jfesgan.defaults import BEFORE_ADDED, listed, stage_names
from jfesgan.models import Models
from jfesgan.models.generator import blend, expression_estimate, shift
from jfesgan.state import FesganStates, JointStates, PhasedState, TrainState, discriminator_start

Params = dict[str, Any]
Batch = dict[str, jax.Array]

GENERATOR_TERMS = ("adv", "latent", "expr", "rec", "identity", "tv")
# What stage 1's warm-up may train on: those, and the terms computed only when their weight is on.
WARMUP_TERMS = (*GENERATOR_TERMS, "code_expr")
# The terms a generator's way of making translations (model.g_edit) adds: "mask", the mean edit
# mask of translations; "source", the encoder's expression estimate's cross-entropy on real faces.
EDIT_TERMS = {"none": (), "mask": ("mask",), "difference": ("source",)}
# D_img's adversarial loss (config.fesgan.gan_loss): METHOD.md's WGAN-GP, or non-saturating + R1.
GAN_LOSSES = ("wgan_gp", "r1")


# FesganLoss weights whose config fields runs saved before them may lack.
ADDED_WEIGHTS = ("code_expr", "dz_cls")


@dataclasses.dataclass(frozen=True)
class FesganLoss:
  """Stage-1 loss weights (``config.fesgan``): the discriminators' and the generator's terms;
  ``ema_decay``, the decay of the generator's moving average (``g_ema``, which samples); and
  ``labels`` (``expression_labels``): False for label-free pre-training, where every image is
  drawn with the zero expression code and no term reads an expression label."""

  gan: str = "wgan_gp"
  gp: float = 10.0
  r1: float = 5.0
  drift: float = 1e-3
  dimg_cls: float = 3.0
  adv: float = 1.0
  latent: float = 1.0
  expr: float = 2.0
  rec: float = 10.0
  identity: float = 5.0
  tv: float = 0.0
  mask: float = 0.1
  source: float = 1.0
  # Computed only when > 0 (it costs an encoder and a decoder pass of its own).
  cycle: float = 0.0
  # The code's expression term (D_z's classifier left guessing; only when > 0, which gives D_z
  # that classifier: jfesgan.models.code_expr) and the weight of that classifier's own
  # cross-entropy in D_z's loss.
  code_expr: float = 0.0
  dz_cls: float = 1.0
  ema_decay: float = 0.0
  dimg_augment: Augment = Augment()
  labels: bool = True
  # The terms of stage 1's warm-up (``fesgan.warmup.terms``, some of WARMUP_TERMS; with
  # neither "adv" nor "expr" among them its generator loss does not run D_img).
  warmup_terms: tuple[str, ...] = ("rec", "identity")
  # The warm-up's terms in its iterations before the discriminators start
  # (``fesgan.warmup.solo_terms``; empty: ``warmup_terms`` there too).
  solo_terms: tuple[str, ...] = ()

  @classmethod
  def from_config(cls, section) -> FesganLoss:
    """From the ``<name>_weight`` fields, ``gan_loss``, ``ema_decay`` and ``dimg_augment`` of
    ``config.fesgan``."""
    values = {f.name: float(section[f"{f.name}_weight"]) for f in dataclasses.fields(cls)
              if f.name not in ("gan", "ema_decay", "dimg_augment", "labels", "warmup_terms",
                                "solo_terms", *ADDED_WEIGHTS)}
    # Runs saved before these fields trained without them (their defaults reproduce that).
    values.update({name: float(section.get(f"{name}_weight", getattr(cls, name)))
                   for name in ADDED_WEIGHTS})
    if section.gan_loss not in GAN_LOSSES:
      raise ValueError(f"config.fesgan.gan_loss={section.gan_loss!r} must be one of {GAN_LOSSES}")
    return cls(**values, gan=section.gan_loss, ema_decay=float(section.ema_decay),
               dimg_augment=Augment.from_config(section.dimg_augment),
               labels=bool(section.get("expression_labels", True)),
               warmup_terms=listed(section.warmup.terms) if "warmup" in section
               else cls.warmup_terms,
               solo_terms=listed(section.warmup.get("solo_terms", ())) if "warmup" in section
               else cls.solo_terms)

  def critic_losses(self, real_s: jax.Array, fake_s: jax.Array, critic, real: jax.Array,
                    fake: jax.Array, rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """D_img's adversarial loss and its penalty, weighted, with their metrics.  ``wgan_gp``
    (METHOD.md): Wasserstein critic loss + ``gp`` * WGAN-GP at random points between real and
    fake + ``drift`` * E[D(real)^2].  ``r1``: non-saturating loss on D_img's score as a logit +
    ``r1`` * E||grad D(real)||^2 (R1 alone; ``r1`` is gamma / 2 in Mescheder et al.'s terms)."""
    if self.gan == "r1":
      adv, pen = losses.ns_discriminator_loss(real_s, fake_s), losses.r1_penalty(critic, real)
      return adv + self.r1 * pen, {"dimg/adv": adv, "dimg/r1": pen,
                                   "dimg/score_gap": jnp.mean(real_s) - jnp.mean(fake_s)}
    adv = losses.wgan_critic_loss(real_s, fake_s)
    n = real.shape[0]
    gp = losses.gradient_penalty(critic, jnp.concatenate([real] * (fake.shape[0] // n)), fake, rng)
    drift = jnp.mean(real_s**2)
    return adv + self.gp * gp + self.drift * drift, {"dimg/wasserstein": -adv, "dimg/gp": gp,
                                                      "dimg/drift": drift}

  def generator_adv(self, fake_s: jax.Array) -> jax.Array:
    """The generator's adversarial term on D_img's scores of one kind of synthetic image."""
    if self.gan == "r1":
      return losses.ns_generator_loss(fake_s)
    return losses.wgan_generator_loss(fake_s)

  def dimg_view(self, images: jax.Array, rng: jax.Array) -> jax.Array:
    """What D_img sees of ``images``: augmented by ``dimg_augment`` (differentiable, so the
    generator's terms reach it through the same random transformations: DiffAugment, Zhao et al.
    2020), with a key folded from ``rng`` so that the other random streams do not move; the
    images themselves when it is off."""
    return self.dimg_augment(images, jax.random.fold_in(rng, 0x41))

  def ema(self, average: Params, params: Params, step: jax.Array) -> Params:
    """The generator's moving average after its ``step``-th update: ``d * average + (1 - d) *
    params`` with ``d = min(ema_decay, (1 + step) / (10 + step))``, so that early on the average
    follows the generator instead of remembering its initialisation (with decay 0, exactly
    ``params``)."""
    if not self.ema_decay:
      return params
    step = jnp.asarray(step, jnp.float32)
    d = jnp.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda a, p: d * a + (1.0 - d) * p, average, params)

  def generator_weight(self, term: str) -> float:
    """The weight of generator term ``term`` (one of WARMUP_TERMS, "cycle" or of EDIT_TERMS'
    values)."""
    return getattr(self, term)

  def generator_total(self, terms: dict[str, jax.Array]) -> jax.Array:
    """Sum of the generator terms (:func:`generator_terms`' names), weighted."""
    return sum(self.generator_weight(name) * terms[name] for name in terms)


# What R's synthetic batch may hold: new identities from the prior, translations of the real batch.
SYNTHETIC_KINDS = ("prior", "translation")


@dataclasses.dataclass(frozen=True)
class JointLoss:
  """Stage-2 weights and options (``config.joint``; see configs/default.py)."""

  synthetic: tuple[str, ...] = ("prior", "translation")
  syn_ratio: float = 1.0
  syn_weight: float = 1.0
  intra_weight: float = 0.01
  intra_mode: str = "rdbp"
  beta: float = 0.5
  generator_terms: bool = True
  update_generator: bool = True
  train_discriminators: bool = True
  centre_decay: float = 0.9
  intra_normalise: bool = False
  augment: Augment = Augment()

  @classmethod
  def from_config(cls, section) -> JointLoss:
    """From the fields of ``config.joint`` of the same names."""
    values = {f.name: section[f.name] for f in dataclasses.fields(cls)}
    values["synthetic"] = tuple(values["synthetic"])
    values["augment"] = Augment.from_config(section.augment)
    return cls(**values)


def named_keys(rng: jax.Array, *names: str) -> dict[str, jax.Array]:
  """Splits ``rng`` into one independent key per name."""
  return dict(zip(names, jax.random.split(rng, len(names))))


def apply_grads(state: TrainState, grads: Any, prefix: str,
                **tx_args) -> tuple[TrainState, dict[str, jax.Array]]:
  """Applies ``grads`` and reports the L2 norms of gradients, parameters and the update;
  ``tx_args`` go to the optimiser's update (``early`` of :func:`jfesgan.state.phased`)."""
  if tx_args:
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params, **tx_args)
    new = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        opt_state=opt_state)
  else:
    new = state.apply_gradients(grads=grads)
  update = jax.tree.map(lambda a, b: a - b, new.params, state.params)
  return new, {f"{prefix}/grad_norm": optax.global_norm(grads),
               f"{prefix}/param_norm": optax.global_norm(new.params),
               f"{prefix}/update_norm": optax.global_norm(update)}


def synthesise(g_params: Params, x: jax.Array, y: jax.Array, rng: jax.Array, *,
               models: Models, reconstruct: bool = True, labels: bool = True,
               translations: bool = True, new_identities: bool = True) -> dict[str, jax.Array]:
  """The images FESGAN makes from a real batch (x, y).

  Returns the identity code ``z = E(x)``, the reconstruction ``x_rec = G(z, y)``, the translation
  ``x_t = G(z, c_t)`` to a random *other* expression ``c_t``, and a new identity
  ``x_p = G(z_p, c_p)`` with ``z_p ~ U[-1, 1]^d`` and ``c_p`` uniform; plus ``c_t``, ``z_p``, ``c_p``.
  With ``model.g_edit="mask"`` the translation is the drawing edited into x through the decoder's
  mask (``mask_t``, also returned); with ``"difference"`` it is x plus the drawn change from the
  encoder's estimate of x's expression (whose logits are returned as ``source_logits``) to c_t.
  Either way the reconstruction stays the full drawing, so that the reconstruction loss keeps
  teaching the decoder to draw whole faces (new identities need it).  With ``reconstruct=False``
  the reconstruction is skipped (the discriminators never see it); with ``translations=False``
  (``new_identities=False``) x_t (x_p) is not drawn: stage 1's warm-up, whose terms need not read
  them (a third of the decoder's work each); c_t, z_p, c_p are still drawn from the same keys, so
  the images drawn are the same.

  With ``labels=False`` (label-free stage 1, ``fesgan.expression_labels``) ``y`` is never read:
  E(x) and z_p are drawn once each with the zero expression code, and the translation is the
  reconstruction (``c_t`` and ``c_p`` are still drawn, and read by no term).
  """
  k, n = models.num_classes, x.shape[0]
  keys = named_keys(rng, "c_t", "z_p", "c_p")
  c_t = (y + jax.random.randint(keys["c_t"], (n,), 1, k)) % k
  z_p = jax.random.uniform(keys["z_p"], (n, models.latent_dim), minval=-1.0, maxval=1.0)
  c_p = jax.random.randint(keys["c_p"], (n,), 0, k)
  z, source = models.g.apply({"params": g_params}, x, method="encode_source")
  if not labels:
    codes = [z, z_p] if new_identities else [z]
    out, _ = models.g.apply({"params": g_params}, jnp.concatenate(codes),
                            jnp.zeros((len(codes) * n, k), jnp.float32), method="draw")
    x_rec = out[:n]
    syn = dict(z=z, x_t=x_rec, c_t=c_t, z_p=z_p, c_p=c_p)
    if new_identities:
      syn["x_p"] = out[n:]
    return dict(syn, x_rec=x_rec) if reconstruct else syn
  # One decoder pass over all (code, expression) pairs that are asked for.
  pairs = {"x_rec": (z, jax.nn.one_hot(y, k))} if reconstruct else {}
  if translations:
    pairs["x_t"] = (z, jax.nn.one_hot(c_t, k))
  if new_identities:
    pairs["x_p"] = (z_p, jax.nn.one_hot(c_p, k))
  if translations and source is not None:  # "difference": x's identity, its estimated expression
    pairs["source"] = (z, expression_estimate(source))
  out, mask = models.g.apply({"params": g_params}, jnp.concatenate([c for c, _ in pairs.values()]),
                             jnp.concatenate([e for _, e in pairs.values()]), method="draw")
  out = dict(zip(pairs, jnp.split(out, len(pairs))))
  syn = dict(z=z, c_t=c_t, z_p=z_p, c_p=c_p)
  for name in ("x_t", "x_p", "x_rec"):  # x_rec: the full drawing G(E(x), y), with or without edit
    if name in out:
      syn[name] = out[name]
  if translations and mask is not None:  # "mask": the translation is the drawing edited into x
    syn["mask_t"] = dict(zip(pairs, jnp.split(mask, len(pairs))))["x_t"]
    syn["x_t"] = blend(x, syn["x_t"], syn["mask_t"])
  if translations and source is not None:  # "difference": x plus the drawn change
    syn["source_logits"] = source
    syn["x_t"] = shift(x, syn["x_t"], out["source"])
  return syn


def cycle_back(g_params: Params, x_t: jax.Array, y: jax.Array, *, models: Models) -> jax.Array:
  """The translation ``x_t`` translated back to the input's own expression ``y`` the way the
  generator makes any translation (``model.g_edit``): G(E(x_t), y) in the paper's shape.  Against
  the input it is the cycle-consistency term (StarGAN, Choi et al. 2018): the code of a translation
  must still hold the person, not only the drawing's Phi features."""
  return models.g.apply({"params": g_params}, x_t, jax.nn.one_hot(y, models.num_classes))


def discriminator_losses(params: Params, batch: Batch, rng: jax.Array, *, models: Models,
                         loss: FesganLoss) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """The losses of ``dimg`` and ``dz``.

  D_img: WGAN-GP critic loss on real x versus {x_t, x_p}, a small drift term, and cross-entropy of
  the expression head on real images.  D_z: non-saturating loss with prior samples as real and
  encoder codes as fake (and with its classifier of the code's expression, that classifier's
  cross-entropy on the codes' labels).  The generator's images and codes enter as constants.
  """
  x, y = batch["image"], batch["label"]
  keys = named_keys(rng, "syn", "gp", "prior")
  syn = jax.lax.stop_gradient(synthesise(params["g"], x, y, keys["syn"], models=models,
                                         reconstruct=False, labels=loss.labels))
  dimg = lambda im: models.dimg.apply({"params": params["dimg"]}, im)
  # With fesgan.dimg_augment, D_img sees (and is penalised on) augmented real and fake images.
  seen = loss.dimg_view(jnp.concatenate([x, syn["x_t"], syn["x_p"]]), keys["gp"])
  n = x.shape[0]
  x, fake = seen[:n], seen[n:]
  scores, logits = dimg(seen)
  real_s, fake_s, real_logits = scores[:n], scores[n:], logits[:n]
  adv_loss, adv_metrics = loss.critic_losses(real_s, fake_s, lambda im: dimg(im)[0], x, fake,
                                             keys["gp"])
  # The expression head learns from the labels; label-free (loss.labels False) it is not trained.
  cls = losses.cross_entropy(real_logits, y) if loss.labels else None
  dimg_loss = adv_loss + loss.dimg_cls * cls if loss.labels else adv_loss

  dz_loss, dz_metrics = latent_discriminator_loss(params["dz"], syn["z"], keys["prior"],
                                                  models=models, labels=y if loss.labels else None,
                                                  cls_weight=loss.dz_cls)
  metrics = {"dimg/loss": dimg_loss, **adv_metrics, **dz_metrics}
  if loss.labels:
    metrics.update({"dimg/cls": cls, "dimg/cls_acc": losses.accuracy(real_logits, y)})
  return {"dimg": dimg_loss, "dz": dz_loss}, metrics


def latent_discriminator_loss(dz_params: Params, z: jax.Array, rng: jax.Array, *, models: Models,
                              labels: jax.Array | None = None, cls_weight: float = 1.0
                              ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """D_z's non-saturating loss: prior samples ``z_p ~ U[-1, 1]^d`` (drawn with ``rng``) real, the
  encoder's codes ``z`` fake (entering as constants where the caller stops their gradient).
  Where D_z has a classifier of the code's expression (``fesgan.code_expr_weight`` > 0) and
  ``labels`` are given, plus ``cls_weight`` times its cross-entropy on the codes' labels."""
  dz = lambda codes: models.dz.apply({"params": dz_params}, codes)
  z_prior = jax.random.uniform(rng, z.shape, minval=-1.0, maxval=1.0)
  real_z, fake_z = dz(z_prior), dz(z)
  dz_loss = losses.ns_discriminator_loss(real_z, fake_z)
  metrics = {"dz/real_prob": jnp.mean(jax.nn.sigmoid(real_z)),
             "dz/fake_prob": jnp.mean(jax.nn.sigmoid(fake_z))}
  if models.dz.num_classes and labels is not None:
    logits = models.dz.apply({"params": dz_params}, z, expression=True)
    cls = losses.cross_entropy(logits, labels)
    dz_loss = dz_loss + cls_weight * cls
    metrics.update({"dz/cls": cls, "dz/cls_acc": losses.accuracy(logits, labels)})
  return dz_loss, {"dz/loss": dz_loss, **metrics}


def generator_terms(params: Params, batch: Batch, rng: jax.Array, *, models: Models,
                    syn: dict[str, jax.Array] | None = None, loss: FesganLoss = FesganLoss(),
                    warmup: bool = False) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """The unweighted stage-1 generator terms, and the synthesised images.

  adv: WGAN terms on x_t and x_p; latent: non-saturating D_z term on E(x); expr: D_img's expression
  cross-entropy on x_t (target c_t) and x_p (target c_p); rec: L1(x, x_rec); identity:
  L1(Phi(x), Phi(x_t)) + L1(Phi(x), Phi(x_rec)) on unit embeddings; tv: total variation of x_t, x_p;
  with ``model.g_edit="mask"`` also mask: the mean edit mask of the translations; with
  ``"difference"`` also source: cross-entropy of the encoder's estimate of x's expression against y
  (it reaches the encoder only); with ``loss.cycle`` > 0 also cycle: L1(x, x_t translated back to
  y) (:func:`cycle_back`); with ``loss.code_expr`` > 0 also code_expr: KL(uniform || D_z's
  classifier of E(x)'s expression) (it reaches the encoder only: the code is to hold the person,
  the expression code the expression).  Label-free (``loss.labels`` False) there is no expr term and no
  expression accuracy in the returned images' dict.
  ``syn`` reuses images already drawn with ``params["g"]`` (stage 2 shares them with R).
  D_img sees x_t and x_p as ``loss.dimg_view`` makes them (``fesgan.dimg_augment``).
  ``warmup`` (stage 1's warm-up, ``fesgan.warmup``): only ``loss.warmup_terms`` (the embedded
  default's: rec and latent; D_img is run only when they include adv or expr), drawing only the
  images they read.
  """
  x, y = batch["image"], batch["label"]
  # The warm-up's terms (without adv and expr) draw only the images they read: x_t for identity
  # and tv, x_p for tv.
  only_warm = warmup and not {"adv", "expr"} & set(loss.warmup_terms)
  warm = set(loss.warmup_terms) if only_warm else None
  if syn is None:
    syn = synthesise(params["g"], x, y, rng, models=models, labels=loss.labels,
                     translations=warm is None or bool({"identity", "tv"} & warm),
                     new_identities=warm is None or "tv" in warm)
  n = x.shape[0]
  phi = lambda im: models.phi.apply({"params": params["phi"]}, im, method="embed")

  def identity():
    e = phi(jnp.concatenate([x, syn["x_t"], syn["x_rec"]]))
    e_x, e_t, e_rec = e[:n], e[n:2 * n], e[2 * n:]
    return losses.l1(e_x, e_t) + losses.l1(e_x, e_rec)

  reconstruction = {"rec": lambda: losses.l1(x, syn["x_rec"]), "identity": identity}
  latent = lambda: losses.ns_generator_loss(models.dz.apply({"params": params["dz"]}, syn["z"]))
  code_expr = lambda: losses.uniform_kl(
      models.dz.apply({"params": params["dz"]}, syn["z"], expression=True))
  smooth = lambda: losses.total_variation(syn["x_t"]) + losses.total_variation(syn["x_p"])
  if only_warm:
    made = {**reconstruction, "latent": latent, "tv": smooth, "code_expr": code_expr}
    return {t: made[t]() for t in loss.warmup_terms}, dict(syn)
  scores, logits = models.dimg.apply(
      {"params": params["dimg"]}, loss.dimg_view(jnp.concatenate([syn["x_t"], syn["x_p"]]), rng))
  terms = {
      "adv": loss.generator_adv(scores[:n]) + loss.generator_adv(scores[n:]),
      "latent": latent(),
      # Label-free stage 1 (loss.labels False) has no expression to ask D_img's head for.
      **({"expr": losses.cross_entropy(logits[:n], syn["c_t"])
                  + losses.cross_entropy(logits[n:], syn["c_p"])} if loss.labels else {}),
      **{t: f() for t, f in reconstruction.items()},
      "tv": smooth(),
  }
  if "mask_t" in syn:
    terms["mask"] = jnp.mean(syn["mask_t"])
  if "source_logits" in syn:
    terms["source"] = losses.cross_entropy(syn["source_logits"], y)
  if loss.cycle > 0:
    terms["cycle"] = losses.l1(x, cycle_back(params["g"], syn["x_t"], y, models=models))
  if loss.code_expr > 0 and loss.labels:
    terms["code_expr"] = code_expr()
  if warmup:  # with adv or expr among the warm-up's terms
    terms = {t: terms[t] for t in loss.warmup_terms if t in terms}
  aux = dict(syn)
  if loss.labels:
    aux.update(expr_acc_t=losses.accuracy(logits[:n], syn["c_t"]),
               expr_acc_p=losses.accuracy(logits[n:], syn["c_p"]))
  return terms, aux


def _all_params(states: FesganStates) -> Params:
  return {"g": states.g.params, "dimg": states.dimg.params, "dz": states.dz.params,
          "phi": states.phi.params}


def discriminator_update(states: FesganStates, batch: Batch, rng: jax.Array, *, models: Models,
                         loss: FesganLoss) -> tuple[FesganStates, dict[str, jax.Array]]:
  """One optimiser step of ``dimg`` and ``dz``; ``g`` and ``phi`` are left as they are."""
  params = _all_params(states)

  def loss_fn(dparams):
    ls, metrics = discriminator_losses({**params, **dparams}, batch, rng, models=models,
                                       loss=loss)
    return ls["dimg"] + ls["dz"], metrics  # disjoint parameters: each gets its own gradient

  grads, metrics = jax.grad(loss_fn, has_aux=True)(
      {"dimg": states.dimg.params, "dz": states.dz.params})
  dimg, m1 = apply_grads(states.dimg, grads["dimg"], "dimg")
  dz, m2 = apply_grads(states.dz, grads["dz"], "dz")
  return states.replace(dimg=dimg, dz=dz), {**metrics, **m1, **m2}


def latent_discriminator_update(states: FesganStates, batch: Batch, rng: jax.Array, *,
                                models: Models, loss: FesganLoss = FesganLoss()
                                ) -> tuple[FesganStates, dict[str, jax.Array]]:
  """One optimiser step of ``dz`` alone, against the encoder's codes of the batch (the warm-up's
  iterations before D_img starts, where a generator term reads D_z: ``latent``, ``code_expr``); D_img's
  parameters and optimiser state are left as they are and its ``step`` counts the iteration.
  The prior's samples come from the key :func:`discriminator_losses` draws them with."""
  keys = named_keys(rng, "syn", "gp", "prior")
  z, _ = models.g.apply({"params": states.g.params}, batch["image"], method="encode_source")
  grads, metrics = jax.grad(
      lambda p: latent_discriminator_loss(
          p, jax.lax.stop_gradient(z), keys["prior"], models=models,
          labels=batch["label"] if loss.labels else None, cls_weight=loss.dz_cls),
      has_aux=True)(states.dz.params)
  dz, m = apply_grads(states.dz, grads, "dz")
  dimg = states.dimg.replace(step=states.dimg.step + 1)
  return states.replace(dimg=dimg, dz=dz), {**metrics, **m}


def generator_update(states: FesganStates, batch: Batch, rng: jax.Array, *, models: Models,
                     loss: FesganLoss, warmup: bool = False
                     ) -> tuple[FesganStates, dict[str, jax.Array]]:
  """One optimiser step of ``g`` (encoder and decoder) on the weighted stage-1 terms (in the
  warm-up, ``warmup``, on ``loss.warmup_terms`` alone, with the warm-up's optimiser)."""
  params = _all_params(states)

  def loss_fn(g_params):
    terms, aux = generator_terms({**params, "g": g_params}, batch, rng, models=models, loss=loss,
                                 warmup=warmup)
    total = loss.generator_total(terms)
    metrics = {f"g/{k}": v for k, v in terms.items()}
    metrics["g/loss"] = total
    metrics.update({f"g/{k}": aux[k] for k in ("expr_acc_t", "expr_acc_p") if k in aux})
    return total, metrics

  grads, metrics = jax.grad(loss_fn, has_aux=True)(states.g.params)
  # With a warm-up g's optimiser is phased, and this variant of the step knows its phase.
  phase = {"early": warmup} if isinstance(states.g.opt_state, PhasedState) else {}
  g, m = apply_grads(states.g, grads, "g", **phase)
  return states.replace(g=g, g_ema=loss.ema(states.g_ema, g.params, g.step)), {**metrics, **m}


def fesgan_step(states: FesganStates, batch: Batch, rng: jax.Array, *, models: Models,
                loss: FesganLoss, update_g: bool = True, warmup: bool = False,
                update_d: bool = True, update_dz: bool = False
                ) -> tuple[FesganStates, dict[str, jax.Array]]:
  """Stage 1: (when ``update_d``) a discriminator step, then (when ``update_g``) a generator step
  on the same batch; ``warmup``: the generator's step is its warm-up's (``config.fesgan.warmup``:
  its terms alone, and g's phased optimiser told it is in its first phase).  ``update_d`` False
  (the warm-up's iterations before its last ``warmup.d_steps``) leaves D_img's parameters and
  optimiser state as they are (the warm-up's terms do not read it, and the iteration costs the
  generator's step alone) and counts the iteration in its ``step``; its warm-up terms are then
  ``loss.solo_terms`` where set (``fesgan.warmup.solo_terms``).  D_z likewise, unless
  ``update_dz`` (the stage's plan sets it where those terms read D_z, ``latent`` or ``code_expr``:
  :func:`jfesgan.state.latent_start`): then D_z steps alone there
  (:func:`latent_discriminator_update`), so that the latent term is a game against a
  discriminator that learns, at the price of one encoder pass and D_z's small step."""
  keys = named_keys(rng, "d", "g")
  metrics = {}
  if not update_d and warmup and loss.solo_terms:
    loss = dataclasses.replace(loss, warmup_terms=loss.solo_terms)
  if update_d:
    states, metrics = discriminator_update(states, batch, keys["d"], models=models, loss=loss)
  elif update_dz:
    states, metrics = latent_discriminator_update(states, batch, keys["d"], models=models,
                                                  loss=loss)
  else:  # their step counters still count the iteration: FesganStates.step, where a run resumes
    states = states.replace(dimg=states.dimg.replace(step=states.dimg.step + 1),
                            dz=states.dz.replace(step=states.dz.step + 1))
  if update_g:
    states, m = generator_update(states, batch, keys["g"], models=models, loss=loss,
                                 warmup=warmup)
    metrics.update(m)
  return states, metrics


def classifier_step(state: TrainState, batch: Batch, rng: jax.Array, *, model, label_key: str,
                    prefix: str, augment: Augment = Augment(),
                    intra_weight: float = 0.0) -> tuple[TrainState, dict[str, jax.Array]]:
  """One cross-entropy step of a network whose outputs are (features, logits over
  ``batch[label_key]``), on the batch's images augmented by ``augment`` (keyed by ``rng``); with
  ``intra_weight`` > 0 also the intra-class loss of its features (a centre loss: the batch's
  class centres, no synthetic images, so ``rdbp`` and ``plain`` are the same loss)."""
  images, labels = augment(batch["image"], rng), batch[label_key]

  def loss_fn(p):
    feats, logits = model.apply({"params": p}, images)
    terms = {"loss": losses.cross_entropy(logits, labels), "acc": losses.accuracy(logits, labels)}
    if intra_weight:
      terms["ce"] = terms["loss"]
      terms["intra"] = losses.intra_class_loss(feats, labels, feats[:0], labels[:0],
                                               num_classes=logits.shape[-1], mode="rdbp")
      terms["loss"] = terms["ce"] + intra_weight * terms["intra"]
    return terms["loss"], terms

  (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state, m = apply_grads(state, grads, prefix)
  return state, {**{f"{prefix}/{k}": v for k, v in terms.items()}, **m}


def phi_step(state: TrainState, batch: Batch, rng: jax.Array, *,
             model) -> tuple[TrainState, dict[str, jax.Array]]:
  """Stage 0: the identity network learns the training subjects (cosine-softmax cross-entropy)."""
  return classifier_step(state, batch, rng, model=model, label_key="subject", prefix="phi")


def recogniser_step(state: TrainState, batch: Batch, rng: jax.Array, *, model, prefix: str = "r",
                    augment: Augment = Augment(),
                    intra_weight: float = 0.0) -> tuple[TrainState, dict[str, jax.Array]]:
  """A recogniser learns expressions from real images alone (cross-entropy), augmented; with
  ``intra_weight`` > 0 also from the intra-class loss of its real features
  (:func:`classifier_step`)."""
  return classifier_step(state, batch, rng, model=model, label_key="label", prefix=prefix,
                         augment=augment, intra_weight=intra_weight)


def synthetic_batch(syn: dict[str, jax.Array], kinds: tuple[str, ...], ratio: float,
                    n_real: int) -> tuple[jax.Array, jax.Array]:
  """R's synthetic batch (x_s, c_s): ``round(ratio * n_real)`` images, split evenly between the
  ``kinds`` ("prior": new identities x_p, "translation": the real batch re-drawn, x_t)."""
  pools = {"prior": (syn["x_p"], syn["c_p"]), "translation": (syn["x_t"], syn["c_t"])}
  unknown = [k for k in kinds if k not in pools]
  if unknown or not kinds:
    raise ValueError(f"joint.synthetic must name some of {SYNTHETIC_KINDS}, got {tuple(kinds)}")
  n = int(round(ratio * n_real))
  if not 1 <= n <= n_real * len(kinds):
    raise ValueError(f"joint.syn_ratio={ratio} gives {n} synthetic images; it must give between "
                     f"1 and {len(kinds)} x the real batch")
  sizes = [n // len(kinds) + (i < n % len(kinds)) for i in range(len(kinds))]
  xs = [pools[k][0][:m] for k, m in zip(kinds, sizes)]
  cs = [pools[k][1][:m] for k, m in zip(kinds, sizes)]
  return jnp.concatenate(xs), jnp.concatenate(cs)


def joint_terms(params: Params, centres: jax.Array, batch: Batch, rng: jax.Array, *,
                models: Models, joint: JointLoss,
                fesgan: FesganLoss = FesganLoss()) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """Stage-2 terms, unweighted: R's cross-entropy on real (``ce_real``) and synthetic (``ce_syn``)
  images, the intra-class loss (``intra``, mode ``joint.intra_mode``, on unit features with
  ``joint.intra_normalise``, R's running centres for classes without a real sample) and the
  stage-1 generator terms (``g_<name>``).  R sees its real and synthetic images augmented by
  ``joint.augment``; the generator's own terms see the batch as it is."""
  x, y = batch["image"], batch["label"]
  syn = synthesise(params["g"], x, y, rng, models=models)
  g_terms, g_aux = generator_terms(params, batch, rng, models=models, syn=syn, loss=fesgan)
  x_s, c_s = synthetic_batch(syn, joint.synthetic, joint.syn_ratio, x.shape[0])
  n = x.shape[0]
  r_in = joint.augment(jnp.concatenate([x, x_s]), jax.random.fold_in(rng, 1))
  feats, logits = models.r.apply({"params": params["r"]}, r_in)
  f_r, f_s = feats[:n], feats[n:]
  if joint.intra_normalise:
    f_r, f_s = losses.unit(f_r), losses.unit(f_s)
  terms = {
      "ce_real": losses.cross_entropy(logits[:n], y),
      "ce_syn": losses.cross_entropy(logits[n:], c_s),
      "intra": losses.intra_class_loss(f_r, y, f_s, c_s, num_classes=models.num_classes,
                                       mode=joint.intra_mode, memory=centres),
      **{f"g_{k}": v for k, v in g_terms.items()},
  }
  aux = {"f_real": f_r, "acc_real": losses.accuracy(logits[:n], y),
         "acc_syn": losses.accuracy(logits[n:], c_s), "expr_acc_t": g_aux["expr_acc_t"],
         "expr_acc_p": g_aux["expr_acc_p"]}
  return terms, aux


def joint_update(states: JointStates, batch: Batch, rng: jax.Array, *, models: Models,
                 fesgan: FesganLoss, joint: JointLoss) -> tuple[JointStates, dict[str, jax.Array]]:
  """One update of ``r`` and ``g`` from a single forward pass.

  L_R = CE(R(x), y) + syn_weight * CE(R(x_s), c_s) + intra_weight * L_intra
  L_G = stage-1 generator loss + beta * (CE(R(x_s), c_s) + intra_weight * L_intra)

  Both are pulled from one ``jax.vjp`` of the term vector, each with its own cotangent; R's loss
  reaches the generator through x_s (with ``rdbp`` only through the synthetic features, since
  the centres are constants).  The running centres are then updated from real features only.
  """
  params = {"g": states.g.params, "dimg": states.dimg.params, "dz": states.dz.params,
            "phi": states.phi.params, "r": states.r.params}

  def terms_fn(trainable):
    terms, aux = joint_terms({**params, **trainable}, states.r.centres, batch, rng,
                             models=models, joint=joint, fesgan=fesgan)
    return terms, aux

  terms, vjp_fn, aux = jax.vjp(terms_fn, {"r": states.r.params, "g": states.g.params},
                               has_aux=True)
  one = lambda v: jnp.ones_like(v)
  zero = lambda v: jnp.zeros_like(v)
  r_cot = {k: zero(v) for k, v in terms.items()}
  r_cot.update(ce_real=one(terms["ce_real"]), ce_syn=joint.syn_weight * one(terms["ce_syn"]),
               intra=joint.intra_weight * one(terms["intra"]))
  g_cot = {k: zero(v) for k, v in terms.items()}
  g_cot.update(ce_syn=joint.beta * one(terms["ce_syn"]),
               intra=joint.beta * joint.intra_weight * one(terms["intra"]))
  g_terms = [k.removeprefix("g_") for k in terms if k.startswith("g_")]
  if joint.generator_terms:
    g_cot.update({f"g_{k}": fesgan.generator_weight(k) * one(terms[f"g_{k}"]) for k in g_terms})
  r_grads = vjp_fn(r_cot)[0]["r"]
  g_grads = vjp_fn(g_cot)[0]["g"]
  r, m_r = apply_grads(states.r, r_grads, "r")
  r = r.replace(centres=losses.update_centre_memory(
      states.r.centres, aux["f_real"], batch["label"], decay=joint.centre_decay))
  if joint.update_generator:
    g, m_g = apply_grads(states.g, g_grads, "g")
    g_ema = fesgan.ema(states.g_ema, g.params, g.step)
  else:  # offline augmentation: the stage-1 generator stays frozen
    g, m_g, g_ema = states.g, {}, states.g_ema
  loss_r = terms["ce_real"] + joint.syn_weight * terms["ce_syn"] + joint.intra_weight * terms["intra"]
  metrics = {"r/loss": loss_r, "r/ce_real": terms["ce_real"], "r/ce_syn": terms["ce_syn"],
             "r/intra": terms["intra"], "r/acc_real": aux["acc_real"], "r/acc_syn": aux["acc_syn"],
             "g/expr_acc_t": aux["expr_acc_t"], "g/expr_acc_p": aux["expr_acc_p"], **m_r, **m_g}
  metrics.update({f"g/{k}": terms[f"g_{k}"] for k in g_terms})
  return states.replace(r=r, g=g, g_ema=g_ema), metrics


def joint_step(states: JointStates, batch: Batch, rng: jax.Array, *, models: Models,
               fesgan: FesganLoss, joint: JointLoss) -> tuple[JointStates, dict[str, jax.Array]]:
  """Stage 2: (optionally) a discriminator step, then the joint update of ``r`` and ``g``."""
  keys = named_keys(rng, "d", "joint")
  metrics = {}
  if joint.train_discriminators:
    states, metrics = discriminator_update(states, batch, keys["d"], models=models, loss=fesgan)
  states, m = joint_update(states, batch, keys["joint"], models=models, fesgan=fesgan, joint=joint)
  return states, {**metrics, **m}


def check_config(config, need) -> None:
  """Checks the options of the steps (GAN loss, critic steps, EMA, intra-class loss, synthetic
  ratio) for :func:`jfesgan.validate.validate`: ``need(ok, field, value, rule)`` records a
  problem."""
  need(config.fesgan.gan_loss in GAN_LOSSES, "fesgan.gan_loss", config.fesgan.gan_loss,
       f"must be one of {GAN_LOSSES}")
  need(config.fesgan.n_critic >= 1, "fesgan.n_critic", config.fesgan.n_critic, "must be >= 1")
  need(0 <= config.fesgan.ema_decay < 1, "fesgan.ema_decay", config.fesgan.ema_decay,
       "must be in [0, 1)")
  warmup = config.fesgan.get("warmup")
  if warmup is not None:
    need(0 <= warmup.steps < config.fesgan.steps, "fesgan.warmup.steps", warmup.steps,
         f"must be in [0, fesgan.steps={config.fesgan.steps}): the warm-up is the first of "
         "stage 1's iterations (0: none)")
    terms = listed(warmup.terms)
    need(bool(terms) and set(terms) <= set(WARMUP_TERMS) and len(set(terms)) == len(terms),
         "fesgan.warmup.terms", terms, f"must name some of {WARMUP_TERMS}, each once")
    d_steps = warmup.get("d_steps", BEFORE_ADDED["fesgan.warmup.d_steps"])
    need(d_steps >= -1, "fesgan.warmup.d_steps", d_steps,
         "must be >= 0 (the warm-up's last iterations in which D_img and D_z step), or -1 (all)")
    late = discriminator_start(warmup) > 0
    need(not late or config.fesgan.n_critic == 1, "fesgan.warmup.d_steps", d_steps,
         f"must be -1 (or >= warmup.steps={warmup.steps}) with fesgan.n_critic="
         f"{config.fesgan.n_critic}: before the discriminators start an iteration is the "
         "generator's step alone")
    need(not late or not {"adv", "expr"} & set(terms), "fesgan.warmup.d_steps", d_steps,
         f"must be -1 (or >= warmup.steps={warmup.steps}) with warmup.terms={terms}: adv and "
         "expr read D_img, which learns nothing before the discriminators start")
    solo = listed(warmup.get("solo_terms", ()))
    alone = tuple(t for t in WARMUP_TERMS if t not in ("adv", "expr"))
    need(set(solo) <= set(alone) and len(set(solo)) == len(solo), "fesgan.warmup.solo_terms",
         solo, f"must name some of {alone}, each once (empty: warmup.terms)")
    need(not solo or late, "fesgan.warmup.solo_terms", solo,
         f"needs iterations without the discriminators: warmup.d_steps={d_steps} must be >= 0 "
         f"and below warmup.steps={warmup.steps}")
  need(config.fesgan.get("cycle_weight", 0.0) >= 0, "fesgan.cycle_weight",
       config.fesgan.get("cycle_weight"), "must be >= 0 (0: off)")
  code = config.fesgan.get("code_expr_weight", 0.0)
  need(code >= 0, "fesgan.code_expr_weight", code, "must be >= 0 (0: off)")
  need(config.fesgan.get("dz_cls_weight", 1.0) >= 0, "fesgan.dz_cls_weight",
       config.fesgan.get("dz_cls_weight"), "must be >= 0")
  need(not code or config.fesgan.get("expression_labels", True), "fesgan.code_expr_weight", code,
       "must be 0 with fesgan.expression_labels=False: the code's expression is read from labels")
  if warmup is not None:
    need("code_expr" not in listed(warmup.terms) + listed(warmup.get("solo_terms", ())) or code > 0,
         "fesgan.warmup.terms", listed(warmup.terms),
         "name code_expr only with fesgan.code_expr_weight > 0 (D_z has no classifier of the "
         "code's expression without it)")
  if not config.fesgan.get("expression_labels", True):
    need("joint" not in stage_names(config), "fesgan.expression_labels", False,
         "(label-free stage 1, for pre-training) cannot run stage 'joint', which learns from the "
         "labels: train a labelled run from this one's workdir with fesgan.init_from")
    need(config.model.g_edit != "difference", "fesgan.expression_labels", False,
         "cannot train model.g_edit='difference', whose expression estimate learns from the labels")
  need(config.joint.intra_mode in losses.INTRA_CLASS_MODES, "joint.intra_mode",
       config.joint.intra_mode, f"must be one of {losses.INTRA_CLASS_MODES}")
  need(config.real.get("intra_weight", 0.0) >= 0, "real.intra_weight",
       config.real.get("intra_weight"), "must be >= 0")
  kinds = tuple(config.joint.synthetic)
  need(bool(kinds) and set(kinds) <= set(SYNTHETIC_KINDS), "joint.synthetic", kinds,
       f"must name some of {SYNTHETIC_KINDS}")
  need(config.joint.syn_ratio > 0, "joint.syn_ratio", config.joint.syn_ratio, "must be > 0")
  need(0 <= config.joint.centre_decay < 1, "joint.centre_decay", config.joint.centre_decay,
       "must be in [0, 1)")
