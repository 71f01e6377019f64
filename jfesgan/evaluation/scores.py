"""Evaluation: recogniser accuracy, FESGAN synthesis scores, and the sample grids' contents.

Synthesis is judged on held-out identities (never seen in training):
- ``synth/l1``, ``synth/psnr``: x_t = G(E(x), c_t) against the true rendering of the same identity
  with expression c_t in the same pose (datasets with a ground truth, ``ArrayDataset.truth``: the
  procedural faces), images in [0, 1]; ``synth/l1_copy``
  and ``synth/psnr_copy`` score the unchanged input against that truth, the do-nothing baseline;
  ``synth/l1_edit``, ``synth/psnr_edit`` score the *ideal edit*: the input plus the truth's own
  change, x + truth(c_t) - truth(y), the best any generator can do that keeps the input's pixels
  (its pixel noise and the frame's intensity stay; ``model.g_edit``'s ceiling);
  ``synth/l1_denoised``, ``synth/psnr_denoised`` score the input's own truth, truth(y): the person
  perfectly denoised with the expression *unchanged*.  The truth is noiseless, so PSNR rewards
  denoising as much as changing the expression: a translation must beat this to show by PSNR that
  it changed the expression, not only cleaned the face;
  ``synth/change_cos``: whether x_t changes x where and as the truth does (the cosine of the two
  changes, :func:`change_agreement`: 1 the same change, 0 for copying the input); the truth's
  change includes removing the input's pixel noise, so a re-drawing scores by denoising too;
  ``synth/change_made``: how much of the *expression's* change x_t makes, the projection of
  x_t - x on truth(c_t) - truth(y) (the change between two clean renderings, no noise in it) over
  its squared length (:func:`change_made`: 1 the whole change, 0 for copying or for denoising
  alone, which is unrelated to it); ``synth/change_made/<class>`` the same over the translations
  to that class from another (which columns of the grid change too little);
  ``synth/psnr_rec_truth``, ``synth/l1_rec_truth``: the reconstruction G(E(x), y) of the same
  inputs against their own truth, truth(y): how well the autoencoder re-draws the person, the
  ceiling of a re-drawn translation's PSNR (one that made the expression's whole change on top
  of this reconstruction scores about this), so that a translation's shortfall can be split into
  the autoencoder's and the expression's;
- ``synth/expr_acc_t``, ``synth/expr_acc_p``: expression accuracy of translations and of new
  identities x_p = G(z_p, c_p) under a recogniser trained on real images only (``eval/real_acc``
  is its accuracy on real held-out images, the ceiling to compare with);
  These are IN-DOMAIN scores: that recogniser learnt from the same few hundred faces as the
  generator and can read cues a person would not see;
- ``judge/<stage>/*`` (with ``eval.judge``): the same questions asked of an independent judge, a
  recogniser trained on another database (:mod:`jfesgan.evaluation.judge`), of the generator of each stage
  that has one (``fesgan``, ``joint``), with the judge's accuracy on the real held-out faces
  (``judge/real_acc``) as the ceiling, overall and per class
  (:func:`jfesgan.evaluation.judge.judge_synthesis`);
- ``synth/rec_l1``: mean absolute error of the reconstruction G(E(x), y) of held-out faces, in
  image units ([-1, 1]): the decoder's full drawing, also for a generator that edits its input
  (``model.g_edit``), whose reconstructions could otherwise score by copying;
- ``synth/id_sim``: mean cosine similarity under Phi between x and x_t (same identity), next to
  ``synth/id_sim_rec`` (x vs its reconstruction) and ``synth/id_sim_other`` (x vs real images of
  other held-out identities): the higher above ``id_sim_other``, the better identity is kept;
  ``synth/id_nearest``: how often the real held-out face nearest to x_t under Phi is of x's
  person; ``synth/id_sim_prior``: mean similarity between new identities drawn from different
  codes (diversity: near ``id_sim_other`` is as varied as real people, near 1 is one face).
  Phi is in the generator's identity loss, so these can be met by cues only Phi reads;
- ``synth/id_nearest_pixel``: the same question with no network at all (:func:`pixel_nearest_person`:
  nearest held-out real face in pixels, each image standardised), next to
  ``synth/id_nearest_chance``, the rate of a random pick.  Pixels enter no loss on x_t; copying
  the input would score 1 here, and fails the judge's expression scores;
  ``synth/id_nearest_edit``, ``synth/id_nearest_pixel_edit`` and ``synth/id_nearest_truth``,
  ``synth/id_nearest_pixel_truth`` (datasets with a ground truth) ask both questions of the ideal
  edits and of the clean truths (below): what a generator that makes exactly the expression's
  change scores, keeping the input's pixels or re-drawing the person cleanly: the two ceilings;
- ``synth/lattice``, ``synth/lattice_prior``: how far a regular lattice stands out of the
  spectrum of translations and of new identities (:func:`lattice`, dB; the decoder's 2x
  upsamplings draw one with the decoder's period, 2**num_down pixels), beside
  ``synth/lattice_real``, the same score of the real held-out faces (the level of a face with no
  lattice). No network and no truth: it works on every database.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np

from jfesgan.data.pipeline import ArrayDataset, to_float
from jfesgan.models import Models


def batched(fn: Callable, *arrays: np.ndarray, batch_size: int) -> np.ndarray:
  """Applies ``fn`` to equal-size chunks of ``arrays`` (the last one padded) and concatenates."""
  n = arrays[0].shape[0]
  outs = []
  for s in range(0, n, batch_size):
    chunk = [a[s:s + batch_size] for a in arrays]
    m = chunk[0].shape[0]
    if m < batch_size:  # pad so every call has the same shape: one compilation
      chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - m, 0)]) for c in chunk]
    outs.append(np.asarray(fn(*chunk))[:m])
  return np.concatenate(outs)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
  """(K, K) counts, rows true class, columns predicted class."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, preds), 1)
  return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
  """Recall of each class from a confusion matrix (0 for a class with no sample)."""
  return np.diag(cm) / np.maximum(cm.sum(1), 1)


class Evaluator:
  """Jitted inference functions of the networks, applied in fixed-size chunks."""

  def __init__(self, models: Models, batch_size: int):
    self.models, self.batch_size = models, batch_size
    k = models.num_classes
    self._translate = jax.jit(lambda p, x, c: models.g.apply({"params": p}, x, jax.nn.one_hot(c, k)))
    # A generator that edits its input (model.g_edit) is scored on its full drawing for the
    # reconstruction: blended into x, a reconstruction could score by copying the input.
    self._redraw = self._translate if models.g.edit == "none" else jax.jit(
        lambda p, x, c: models.g.apply({"params": p}, x, jax.nn.one_hot(c, k),
                                       method=lambda g, x, c: g.decode(g.encode(x), c)))
    self._decode = jax.jit(lambda p, z, c: models.g.apply({"params": p}, z, jax.nn.one_hot(c, k),
                                                          method="decode"))
    self._embed = jax.jit(lambda p, x: models.phi.apply({"params": p}, x, method="embed"))
    self._logits = jax.jit(lambda p, x: models.r.apply({"params": p}, x)[1])

  def translate(self, g_params, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """G(E(x), c) for float images x in [-1, 1] and integer expressions c."""
    return batched(functools.partial(self._translate, g_params), x, c, batch_size=self.batch_size)

  def reconstruct(self, g_params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """G(E(x), y), the full drawing (not edited into x, with ``model.g_edit``)."""
    return batched(functools.partial(self._redraw, g_params), x, y, batch_size=self.batch_size)

  def decode(self, g_params, z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """G(z, c)."""
    return batched(functools.partial(self._decode, g_params), z, c, batch_size=self.batch_size)

  def embed(self, phi_params, x: np.ndarray) -> np.ndarray:
    """Phi's unit identity embeddings."""
    return batched(functools.partial(self._embed, phi_params), x, batch_size=self.batch_size)

  def predict(self, r_params, x: np.ndarray) -> np.ndarray:
    """R's predicted classes."""
    logits = batched(functools.partial(self._logits, r_params), x, batch_size=self.batch_size)
    return logits.argmax(-1)


def recognition_scores(ev: Evaluator, r_params, data: ArrayDataset, prefix: str) -> tuple[dict, np.ndarray]:
  """Accuracy and mean per-class accuracy of R on ``data``; also the confusion matrix."""
  preds = ev.predict(r_params, to_float(data.image))
  cm = confusion_matrix(data.label, preds, data.num_classes)
  per_class = per_class_accuracy(cm)
  return {f"{prefix}/acc": float(np.mean(preds == data.label)),
          f"{prefix}/mean_class_acc": float(per_class[cm.sum(1) > 0].mean())}, cm


def translation_targets(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """Every (image index, other expression) pair: each image to each expression but its own."""
  idx = np.repeat(np.arange(labels.shape[0]), num_classes - 1)
  offset = np.tile(np.arange(1, num_classes), labels.shape[0])
  return idx, (labels[idx] + offset) % num_classes


def prior_codes(rng: np.random.Generator, n: int, latent_dim: int,
                num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """``n`` new identities' codes z_p ~ U(-1, 1)^latent_dim and requested expressions c_p, drawn
  in this order from ``rng``: the summary, the judges and ``jfesgan generators --rescore`` draw
  the same ones from the same stream."""
  z_p = rng.uniform(-1, 1, (n, latent_dim)).astype(np.float32)
  return z_p, rng.integers(0, num_classes, n)


def lattice_scores(x_t: np.ndarray, x_p: np.ndarray, real: np.ndarray,
                   period: int) -> dict[str, float]:
  """``synth/lattice``, ``_prior`` and ``_real`` (:func:`lattice`) of translations, new
  identities and the real held-out faces."""
  return {"synth/lattice": lattice(x_t, period), "synth/lattice_prior": lattice(x_p, period),
          "synth/lattice_real": lattice(real, period)}


def _standardised(images: np.ndarray) -> np.ndarray:
  """Each image flattened, less its mean, scaled to unit norm (brightness and contrast removed)."""
  a = images.reshape(images.shape[0], -1).astype(np.float64)
  a = a - a.mean(axis=1, keepdims=True)
  return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)


def pixel_nearest_person(images: np.ndarray, sources: np.ndarray, real: np.ndarray,
                         subjects: np.ndarray) -> tuple[float, float]:
  """How often the real face nearest to ``images[i]`` (cosine of standardised pixels) is of the
  person of ``real[sources[i]]``, and the rate of a uniformly random pick among ``real``.

  A loss-free identity score: no network is involved, so nothing the generator was trained
  against can be satisfied instead of keeping the person.
  """
  images, real = np.asarray(images), np.asarray(real)
  sources, subjects = np.asarray(sources), np.asarray(subjects)
  if images.shape[1:] != real.shape[1:]:
    raise ValueError(f"images {images.shape[1:]} and real faces {real.shape[1:]} differ in shape")
  if sources.shape != (images.shape[0],) or subjects.shape != (real.shape[0],):
    raise ValueError(f"need one source per image and one subject per real face; got sources "
                     f"{sources.shape} for {images.shape[0]} images, subjects {subjects.shape} for "
                     f"{real.shape[0]} real faces")
  chance = np.mean(subjects[None, :] == subjects[sources][:, None], axis=1)
  return (nearest_person(_standardised(images), sources, _standardised(real), subjects),
          float(np.mean(chance)))


def nearest_person(embedded: np.ndarray, sources: np.ndarray, real: np.ndarray,
                   subjects: np.ndarray) -> float:
  """How often the real face whose unit vector (``real``, one row per face) is nearest to row i of
  ``embedded`` (largest dot product) is of the person of ``real[sources[i]]``: the question
  ``synth/id_nearest`` asks under Phi and :func:`pixel_nearest_person` in pixels."""
  return float(np.mean(subjects[np.argmax(embedded @ real.T, axis=1)] == subjects[sources]))


def synthesis_scores(ev: Evaluator, *, g_params, phi_params, r_params, test: ArrayDataset,
                     rng: np.random.Generator, num_prior_samples: int) -> dict[str, float]:
  """The synthesis scores described in the module docstring, but the judge's."""
  k = test.num_classes
  x = to_float(test.image)
  idx, c_t = translation_targets(test.label, k)
  x_t = ev.translate(g_params, x[idx], c_t)
  scores = {}
  pred_t = ev.predict(r_params, x_t)
  scores["synth/expr_acc_t"] = float(np.mean(pred_t == c_t))
  z_p, c_p = prior_codes(rng, num_prior_samples, ev.models.latent_dim, k)
  x_p = ev.decode(g_params, z_p, c_p)
  scores["synth/expr_acc_p"] = float(np.mean(ev.predict(r_params, x_p) == c_p))

  e_x = ev.embed(phi_params, x)
  e_t = ev.embed(phi_params, x_t)
  x_rec = ev.reconstruct(g_params, x, test.label)
  e_rec = ev.embed(phi_params, x_rec)
  scores["synth/rec_l1"] = float(np.mean(np.abs(x_rec - x)))
  scores["synth/id_sim"] = float(np.mean(np.sum(e_x[idx] * e_t, -1)))
  scores["synth/id_sim_rec"] = float(np.mean(np.sum(e_x * e_rec, -1)))
  other = test.subject[:, None] != test.subject[None, :]
  scores["synth/id_sim_other"] = float((e_x @ e_x.T)[other].mean()) if other.any() else float("nan")
  scores["synth/id_nearest"] = nearest_person(e_t, idx, e_x, test.subject)
  scores["synth/id_nearest_pixel"], scores["synth/id_nearest_chance"] = pixel_nearest_person(
      x_t, idx, x, test.subject)
  scores.update(lattice_scores(x_t, x_p, x, 2**ev.models.g.num_down))
  e_p = ev.embed(phi_params, x_p)
  distinct = ~np.eye(len(e_p), dtype=bool)
  scores["synth/id_sim_prior"] = float((e_p @ e_p.T)[distinct].mean()) if len(e_p) > 1 else float("nan")

  if test.truth is not None:
    scores.update(truth_scores(x[idx], x_t, test, idx, c_t,
                               person_by_phi=lambda im: nearest_person(
                                   ev.embed(phi_params, im), idx, e_x, test.subject),
                               x_rec=x_rec[idx]))
  return scores


def _lattice_neighbours(u: int, v: int, h: int, w: int, on_lattice: np.ndarray) -> list[tuple]:
  """The frequencies around (u, v) that a lattice bin is compared with: one and two bins away
  along each axis, or only along the axis for a bin on one (images' spectra are brightest on the
  axes, so an off-axis neighbour would make any axis bin stand out), lattice bins left out."""
  steps = [(a, 0) for a in (-2, -1, 1, 2)] + [(0, b) for b in (-2, -1, 1, 2)]
  if u == 0:
    steps = [(0, b) for b in (-2, -1, 1, 2)]
  elif v == 0:
    steps = [(a, 0) for a in (-2, -1, 1, 2)]
  near = [((u + a) % h, (v + b) % w) for a, b in steps]
  return [f for f in near if not on_lattice[f]]


def lattice(images: np.ndarray, period: int) -> float:
  """How far a lattice of ``period`` pixels stands out of the spectrum of ``images`` (N, H, W, C),
  in dB: the images' mean power spectrum (each image less its mean) at every frequency of such a
  lattice (multiples of H/period and W/period but zero) over the median of its neighbours
  (:func:`_lattice_neighbours`), the ratios averaged, so that one strong frequency (a pure
  checkerboard) counts as much as many weaker ones.  About 0-1 dB for faces with no lattice; a
  decoder's checkerboard or grid lifts it (a visible one by 5 dB and more).  ``period`` must
  divide H and W, at most half of each."""
  x = np.asarray(images, np.float64)
  if x.ndim != 4:
    raise ValueError(f"lattice: images must be (N, H, W, C), got shape {x.shape}")
  h, w = x.shape[1:3]
  if period < 2 or h % period or w % period or 2 * period > min(h, w):
    raise ValueError(f"lattice: period {period} must be >= 2, divide the images' {h}x{w} and be "
                     f"at most half of each")
  x = x - x.mean(axis=(1, 2), keepdims=True)
  power = np.mean(np.abs(np.fft.fft2(x, axes=(1, 2)))**2, axis=(0, 3))
  floor = 1e-12 * max(float(power.max()), 1e-30)
  on_lattice = np.zeros((h, w), bool)
  on_lattice[::h // period, ::w // period] = True
  ratios = [(power[u, v] + floor)
            / (np.median([power[f] for f in _lattice_neighbours(u, v, h, w, on_lattice)]) + floor)
            for u, v in zip(*np.nonzero(on_lattice)) if u or v]
  return float(10 * np.log10(np.mean(ratios)))


def ideal_edits(x: np.ndarray, truth: np.ndarray, own: np.ndarray) -> np.ndarray:
  """The ideal edits of images ``x`` (float, [-1, 1]): the input plus the truth's own change of
  expression, x + truth(c_t) - truth(y), clipped to [-1, 1]; ``truth`` and ``own`` are the two
  clean renderings (:meth:`ArrayDataset.render_truth`, in [0, 1])."""
  return np.clip(x + 2.0 * (truth - own), -1.0, 1.0)


def truth_scores(x: np.ndarray, x_t: np.ndarray, test: ArrayDataset, idx: np.ndarray,
                 c_t: np.ndarray, person_by_phi: Callable[[np.ndarray], float] | None = None,
                 x_rec: np.ndarray | None = None) -> dict[str, float]:
  """The scores against the renderer's truth (the module's docstring) of translations ``x_t`` of
  ``x = test`` images ``idx`` (float, [-1, 1]) to expressions ``c_t``, with the person ceilings:
  ``synth/id_nearest_pixel_edit`` / ``_truth``, the person by pixels of the ideal edits and of
  the clean truths, and with ``person_by_phi`` (images of idx's people -> how often the nearest
  real face under Phi is the right person) ``synth/id_nearest_edit`` / ``_truth``; with
  ``x_rec``, the reconstructions G(E(x), y) of the same inputs, ``synth/psnr_rec_truth`` and
  ``synth/l1_rec_truth`` (against the inputs' own truth)."""
  truth = test.render_truth(idx, c_t)
  fake01, real01 = (x_t + 1) / 2, (x + 1) / 2
  own = test.render_truth(idx, test.label[idx])
  edited = ideal_edits(x, truth, own)
  scores = {}
  real = to_float(test.image)
  for name, img in (("_edit", edited), ("_truth", 2 * truth - 1)):
    scores[f"synth/id_nearest_pixel{name}"] = pixel_nearest_person(img, idx, real,
                                                                   test.subject)[0]
    if person_by_phi is not None:
      scores[f"synth/id_nearest{name}"] = person_by_phi(img)
  ideal = (edited + 1) / 2
  pairs = [("", fake01, truth), ("_copy", real01, truth), ("_edit", ideal, truth),
           ("_denoised", own, truth)]
  if x_rec is not None:
    pairs.append(("_rec_truth", (x_rec + 1) / 2, own))
  for name, img, true in pairs:
    err = (img - true).reshape(img.shape[0], -1)
    mse = np.maximum(np.mean(err**2, -1), 1e-10)
    scores[f"synth/l1{name}"] = float(np.mean(np.abs(err)))
    scores[f"synth/psnr{name}"] = float(np.mean(10 * np.log10(1.0 / mse)))
  scores["synth/change_cos"] = change_agreement(real01, fake01, truth)
  change = truth - own
  scores["synth/change_made"] = change_made(real01, fake01, change)
  for k, name in enumerate(test.class_names):
    to_k = (c_t == k) & (test.label[idx] != k)
    if to_k.any():
      scores[f"synth/change_made/{name}"] = change_made(real01[to_k], fake01[to_k], change[to_k])
  return scores


def change_made(x: np.ndarray, x_t: np.ndarray, change: np.ndarray) -> float:
  """The mean over images of how much of the expression's ``change`` (truth(c_t) - truth(y), two
  clean renderings) a translation makes: <x_t - x, change> / |change|^2.  1: all of it (the
  ideal edit); 0: none (copying; denoising, whose change is noise, unrelated to it); a change
  elsewhere or in another direction adds nothing on average."""
  d_t = (x_t - x).reshape(x.shape[0], -1)
  d = change.reshape(x.shape[0], -1)
  return float(np.mean(np.sum(d_t * d, -1) / np.maximum(np.sum(d * d, -1), 1e-12)))


def change_agreement(x: np.ndarray, x_t: np.ndarray, truth: np.ndarray) -> float:
  """How well a translation changes its input where and as the truth does: the mean over images
  of the cosine between the translation's change ``x_t - x`` and the truth's ``truth - x`` (1:
  the same change; 0: a change unrelated to the expression's, or none at all; below 0: the
  opposite).  Copying the input scores 0."""
  d_t = (x_t - x).reshape(x.shape[0], -1)
  d_true = (truth - x).reshape(x.shape[0], -1)
  norms = np.linalg.norm(d_t, axis=-1) * np.linalg.norm(d_true, axis=-1)
  return float(np.mean(np.sum(d_t * d_true, -1) / np.maximum(norms, 1e-12)))


def grid_contents(ev: Evaluator, g_params, test: ArrayDataset, rows: int, seed: int,
                  latent_dim: int) -> dict[str, np.ndarray]:
  """Inputs, reconstructions and translations of ``rows`` held-out identities, and ``rows`` new
  identities with every expression (fixed by ``seed``, so grids of a run are comparable)."""
  rng = np.random.default_rng([seed, 99])
  k = test.num_classes
  subjects = np.unique(test.subject)[:rows]
  pick = np.array([rng.choice(np.flatnonzero(test.subject == s)) for s in subjects])
  x = to_float(test.image[pick])
  every = np.tile(np.arange(k), len(pick))
  trans = ev.translate(g_params, np.repeat(x, k, 0), every).reshape((len(pick), k) + x.shape[1:])
  z = rng.uniform(-1, 1, (rows, latent_dim)).astype(np.float32)
  prior = ev.decode(g_params, np.repeat(z, k, 0), np.tile(np.arange(k), rows))
  return dict(inputs=x, recon=ev.reconstruct(g_params, x, test.label[pick]), translations=trans,
              prior=prior.reshape((rows, k) + x.shape[1:]), pick=pick)
