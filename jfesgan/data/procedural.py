"""Procedural faces: the embedded default dataset, and the ground truth for judging synthesis.

A face is drawn from an *identity* (face and jaw shape, skin, hair and background tone, eye spacing
and size, brows, nose, mouth, and idiosyncrasies: a resting expression and a personal version of
each prototype expression with its own strength) and an *expression* given as action-unit (AU)
activations: brows up/down, inner brows raised or knitted, eye opening, mouth curve, opening,
width and asymmetry, upper-lip raise, nose wrinkle, cheek raise, lip press.  Like the last frames
of a CK+ sequence, each identity shows every expression in a few frames of rising intensity, and
each image has its own small shift, scale, rotation, lighting, AU noise and pixel noise.

Everything is vectorised numpy with soft (anti-aliased) edges and deterministic by seed: identity
``i`` depends only on ``(seed, i)``, an image only on ``(seed, i, expression, frame)``.
:func:`render_truth` draws any identity with any expression in a given pose, without noise: the
ground truth against which a translation ``x_t = G(E(x), c_t)`` is scored.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# CK+ label order (its label file codes 1..7); "neutral" (code 0) is optional.
EXPRESSIONS = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
AUS = ("brow_raise", "brow_inner", "eye_open", "mouth_curve", "mouth_open", "mouth_width",
       "mouth_asym", "lip_raise", "nose_wrinkle", "cheek_raise", "lip_press")
# Prototype AU activations per expression (rows follow EXPRESSIONS).
_PROTOTYPES = np.array([
    # raise inner  eye  curve open width asym lipr wrink cheek press
    [-0.50, -1.00, -0.25, -0.30, 0.00, -0.15, 0.00, 0.00, 0.20, 0.00, 0.90],  # anger
    [0.00, 0.00, -0.15, 0.05, 0.00, 0.00, 1.00, 0.00, 0.00, 0.10, 0.20],  # contempt
    [-0.35, -0.50, -0.45, -0.40, 0.15, 0.00, 0.00, 0.90, 1.00, 0.30, 0.00],  # disgust
    [0.60, 0.90, 0.70, -0.25, 0.45, 0.35, 0.00, 0.10, 0.00, 0.00, 0.00],  # fear
    [0.05, 0.00, -0.35, 1.00, 0.35, 0.35, 0.00, 0.10, 0.00, 1.00, 0.00],  # happiness
    [-0.10, 0.90, -0.25, -0.80, 0.00, -0.10, 0.00, 0.00, 0.00, 0.00, 0.30],  # sadness
    [1.00, 0.30, 1.00, 0.00, 1.00, -0.35, 0.00, 0.00, 0.00, 0.00, 0.00],  # surprise
], np.float32)
# Bump whenever the drawing changes: it names the TFDS builder config, so a cached copy drawn by an
# older renderer is never read back as current.
RENDERER_VERSION = 2
POSE_FIELDS = ("dx", "dy", "scale", "rotation", "light_angle", "light_amp", "brightness")


@dataclasses.dataclass(frozen=True)
class FaceSpec:
  """What the procedural dataset contains.  Every field changes the images, so all of them name
  the TFDS builder config."""

  image_size: int = 48
  channels: int = 1
  num_identities: int = 120
  frames: int = 3  # frames per (identity, expression), intensity rising to the peak
  include_neutral: bool = False
  seed: int = 0
  idiosyncrasy: float = 0.3  # std of an identity's own offset to each prototype AU
  au_noise: float = 0.12  # std of per-image AU noise
  pixel_noise: float = 0.04  # std of per-image Gaussian pixel noise (images in [0, 1])

  def __post_init__(self):
    if self.image_size < 16:
      raise ValueError(f"data.image_size must be >= 16, got {self.image_size}")
    if self.channels not in (1, 3):
      raise ValueError(f"data.channels must be 1 or 3, got {self.channels}")
    if self.num_identities < 2 or self.frames < 1:
      raise ValueError("data.num_identities must be >= 2 and data.frames >= 1, got "
                       f"{self.num_identities} and {self.frames}")

  @property
  def class_names(self) -> tuple[str, ...]:
    return class_names(self.include_neutral)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def name(self) -> str:
    """A builder-config name that encodes every field."""
    return (f"r{RENDERER_VERSION}_s{self.image_size}_c{self.channels}_n{self.num_identities}_f{self.frames}"
            f"_neu{int(self.include_neutral)}_seed{self.seed}_i{self.idiosyncrasy:g}"
            f"_a{self.au_noise:g}_p{self.pixel_noise:g}")


def class_names(include_neutral: bool) -> tuple[str, ...]:
  """Expression class names in label order."""
  return (("neutral",) if include_neutral else ()) + EXPRESSIONS


def _prototypes(include_neutral: bool) -> np.ndarray:
  if include_neutral:
    return np.concatenate([np.zeros((1, len(AUS)), np.float32), _PROTOTYPES])
  return _PROTOTYPES


def identity_params(spec: FaceSpec, ids: np.ndarray) -> dict[str, np.ndarray]:
  """Per-identity geometry, tones and expression idiosyncrasies, each an array over ``ids``."""
  rows = []
  k = spec.num_classes
  for i in np.asarray(ids).reshape(-1):
    r = np.random.default_rng([spec.seed, 1, int(i)])
    u = r.uniform
    skin = u(0.45, 0.85)
    p = dict(
        face_cy=u(0.0, 0.08), face_rx=u(0.56, 0.70), face_ry=u(0.70, 0.82), taper=u(0.10, 0.35),
        skin=skin, skin_hue=u(-1, 1), hair=u(0.05, 0.6) if r.random() < 0.8 else u(0.6, 0.9),
        hair_hue=u(-1, 1), hairline=u(0.45, 0.78), hair_rx=u(1.02, 1.15), hair_ry=u(1.03, 1.12),
        bg=u(0.15, 0.95), bg_hue=u(-1, 1),
        eye_y=u(0.12, 0.25), eye_sep=u(0.34, 0.46), eye_rx=u(0.18, 0.24), eye_ry=u(0.45, 0.65),
        iris=u(0.05, 0.5), brow_h=u(1.5, 2.4), brow_thick=u(0.04, 0.07), brow_len=u(1.05, 1.4),
        brow_arch=u(-0.01, 0.04), brow_tone=u(-0.15, 0.15), nose_y=u(0.08, 0.22),
        nose_w=u(0.06, 0.11), mouth_y=u(0.42, 0.54), mouth_w=u(0.36, 0.50), lip=u(0.03, 0.05),
        lip_tone=u(0.55, 0.85), gain=u(0.6, 1.15))
    p["resting"] = r.normal(0.0, 0.15, len(AUS))
    p["protos"] = (_prototypes(spec.include_neutral)
                   + r.normal(0.0, spec.idiosyncrasy, (k, len(AUS))) * (np.abs(
                       _prototypes(spec.include_neutral)) + 0.3))
    rows.append(p)
  return {key: np.stack([np.asarray(p[key], np.float32) for p in rows]) for key in rows[0]}


def frame_intensity(frames: int) -> np.ndarray:
  """Intensity of each frame of a sequence's tail: rising to 1 at the last (peak) frame."""
  return np.linspace(0.7, 1.0, frames, dtype=np.float32) if frames > 1 else np.ones(1, np.float32)


def sample_pose(rng: np.random.Generator, n: int) -> np.ndarray:
  """(n, 7) pose/lighting jitter, columns as POSE_FIELDS."""
  return np.stack([
      rng.uniform(-0.06, 0.06, n), rng.uniform(-0.06, 0.06, n), rng.uniform(0.93, 1.07, n),
      rng.uniform(-0.10, 0.10, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(0.0, 0.25, n),
      rng.uniform(0.85, 1.15, n)
  ], axis=1).astype(np.float32)


def _sig(d: np.ndarray, edge: float) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(d / (2.0 * edge)))


def _tint(lum: np.ndarray, hue: np.ndarray, strength: float, channels: int) -> np.ndarray:
  """(B,) luminance and hue in [-1, 1] -> (B, 1, 1, channels) colour."""
  if channels == 1:
    return lum[:, None, None, None]
  warm = np.stack([1 + strength * hue, 1 + 0.2 * strength * hue, 1 - strength * hue], -1)
  rgb = lum[:, None] * warm
  return np.clip(rgb, 0, 1)[:, None, None, :]


def _render_aus(spec: FaceSpec, idp: dict[str, np.ndarray], aus: np.ndarray,
                pose: np.ndarray) -> np.ndarray:
  """Draws B faces: identity params (B,), AU activations (B, A), pose (B, 7) -> (B, R, R, C) in [0, 1]."""
  b = aus.shape[0]
  res, ch = spec.image_size, spec.channels
  e = 1.5 / res  # soft-edge width: about a pixel in [-1, 1] coordinates
  col = lambda v: v[:, None, None]  # (B,) -> (B, 1, 1)
  g = (np.arange(res, dtype=np.float32) + 0.5) / res * 2 - 1
  gy, gx = np.meshgrid(g, g, indexing="ij")
  # Inverse similarity transform of the pose: face coordinates (x, y) of each pixel.
  dx, dy, sc, rot = (col(pose[:, i]) for i in range(4))
  px, py = gx[None] - dx, gy[None] - dy
  cr, sr = np.cos(rot), np.sin(rot)
  x = (cr * px + sr * py) / sc
  y = (-sr * px + cr * py) / sc
  a = {name: col(aus[:, i]) for i, name in enumerate(AUS)}
  p = {k: col(v) for k, v in idp.items() if v.ndim == 1}

  jaw = 0.16 * np.maximum(a["mouth_open"], 0)
  cy, rx, ry = p["face_cy"], p["face_rx"], p["face_ry"]
  yn = (y - cy) / ry
  rx_y = rx * (1 - p["taper"] * np.clip(yn, 0, 1)**2)
  ry_y = np.where(y > cy, ry + jaw, ry)
  face_d = 1 - np.sqrt((x / rx_y)**2 + ((y - cy) / ry_y)**2)
  face = _sig(face_d * rx, e)
  hair_back = _sig(1 - np.sqrt((x / (rx * p["hair_rx"]))**2 + ((y - cy + 0.06) / (ry * p["hair_ry"]))**2),
                   e / ry) * _sig(cy + 0.1 * ry - y, e)
  fringe = face * _sig((cy - p["hairline"] * ry) - y - 0.04 * np.cos(5 * x), e)

  bgc = _tint(idp["bg"], idp["bg_hue"], 0.3, ch)
  skin_c = _tint(idp["skin"], 0.4 + 0.3 * idp["skin_hue"], 0.25, ch)
  hair_c = _tint(idp["hair"], idp["hair_hue"], 0.35, ch)
  img = np.broadcast_to(bgc, (b, res, res, ch)).copy()

  def lay(alpha, colour):
    nonlocal img
    alpha = alpha[..., None]
    img = img * (1 - alpha) + alpha * colour

  lay(hair_back, hair_c)
  shade = 1 - 0.18 * ((x / rx)**2 + ((y - cy) / ry)**2)
  lay(face, skin_c * shade[..., None])
  lay(fringe, hair_c)

  # Eyes: lash outline, sclera, iris, pupil; the opening follows eye_open and cheek raise.
  ey = cy - p["eye_y"] * ry
  sep = p["eye_sep"] * rx
  erx = p["eye_rx"] * rx
  open_ = np.clip(1 + 0.5 * a["eye_open"] - 0.15 * np.maximum(a["cheek_raise"], 0), 0.2, 1.7)
  ery = erx * p["eye_ry"] * open_
  dark = _tint(0.12 * idp["skin"] / idp["skin"], 0 * idp["skin"], 0, ch)
  for s in (-1.0, 1.0):
    ex = s * sep
    r2 = ((x - ex) / erx)**2 + ((y - ey) / ery)**2
    lay(_sig(1.18 - np.sqrt(r2), 0.06) * face, dark)
    sclera = _sig(1 - np.sqrt(r2), 0.06)
    lay(sclera, np.full((1, 1, 1, ch), 0.95, np.float32))
    ir = erx * p["eye_ry"] * 0.9
    iris = _sig(ir - np.sqrt((x - ex)**2 + (y - ey)**2), e) * sclera
    lay(iris, _tint(idp["iris"], 0 * idp["iris"], 0, ch))
    lay(_sig(0.45 * ir - np.sqrt((x - ex)**2 + (y - ey)**2), e) * sclera, dark * 0.3)

    # Brows: t runs from the inner (-1) to the outer (+1) end.
    blen = erx * p["brow_len"]
    t = s * (x - ex) / blen
    yc = ey - erx * p["eye_ry"] * p["brow_h"] - 0.10 * a["brow_raise"]
    yb = yc + 0.07 * (-a["brow_inner"]) * (1 - t) / 2 - p["brow_arch"] * (1 - t**2) \
        + 0.015 * a["mouth_asym"] * s * (s > 0)
    brow = _sig(p["brow_thick"] / 2 - np.abs(y - yb), e) * _sig((1 - np.abs(t)) * blen, e) * face
    lay(brow, hair_c * (1 + col(idp["brow_tone"]))[..., None] * 0.7)

    # Cheek raise (happiness): lifted, lighter cheeks and nasolabial folds.
    cheek = np.exp(-(((x - s * sep * 1.05) / (0.14 * rx))**2 + ((y - ey - 0.28 * ry) / (0.1 * ry))**2))
    lay(0.35 * np.clip(a["cheek_raise"], 0, 1) * cheek * face, skin_c * 1.15)

  # Forehead lines (raised brows) and glabella lines (knitted brows).
  fy = ey - erx * p["eye_ry"] * p["brow_h"] - 0.22 * ry
  for k in range(3):
    line = _sig(0.008 - np.abs(y - fy + k * 0.07 * ry - 0.02 * x**2 + 0.1 * a["brow_raise"] * 0), e)
    lay(0.5 * np.clip(a["brow_raise"] - 0.2, 0, 1) * line * _sig(0.55 * rx - np.abs(x), e) * face
        * (1 - fringe), skin_c * 0.6)
  for s in (-1.0, 1.0):
    gl = _sig(0.008 - np.abs(x - s * 0.045), e) * _sig(0.07 * ry - np.abs(y - ey + 0.12 * ry), e)
    lay(0.7 * np.clip(-a["brow_inner"] - 0.2, 0, 1) * gl * face, skin_c * 0.6)

  # Nose: bridge shadow, nostrils; the wrinkle lifts the nostrils and draws lines on the bridge.
  ny = cy + p["nose_y"] * ry - 0.03 * np.maximum(a["nose_wrinkle"], 0)
  nw = p["nose_w"]
  lay(0.25 * _sig(0.01 - np.abs(x - 0.02), e) * _sig(ny - y, e) * _sig(y - ey, e) * face, skin_c * 0.7)
  for s in (-1.0, 1.0):
    nos = _sig(1 - np.sqrt(((x - s * nw * 0.5) / (0.3 * nw))**2 + ((y - ny) / (0.15 * nw))**2), 0.1)
    lay(nos * face, skin_c * 0.45)
  for k in range(3):
    wy = ey + (0.1 + 0.09 * k) * ry
    wl = _sig(0.008 - np.abs(y - wy - 0.3 * x**2), e) * _sig(nw * 0.7 - np.abs(x), e)
    lay(0.8 * np.clip(a["nose_wrinkle"], 0, 1) * wl * face, skin_c * 0.55)

  # Mouth: t in [-1, 1] across the mouth; corners follow curve and asymmetry, the jaw drops with
  # the opening, the upper lip rises with lip_raise, lips thin with lip_press.
  my = cy + p["mouth_y"] * ry + 0.5 * jaw
  mw = p["mouth_w"] * rx * (1 + 0.3 * a["mouth_width"] + 0.1 * np.maximum(a["mouth_curve"], 0))
  t = x / mw
  env = np.sqrt(np.clip(1 - t**2, 0, 1))
  centre = my - 0.075 * a["mouth_curve"] * t**2 - 0.09 * a["mouth_asym"] * np.maximum(t, 0)**2
  gap = np.maximum(a["mouth_open"], 0) * 0.15 * ry
  th = p["lip"] * np.clip(1 - 0.6 * a["lip_press"], 0.25, 1.5)
  top_in = centre - (0.35 * gap + 0.045 * np.maximum(a["lip_raise"], 0)) * env
  bot_in = centre + 0.65 * gap * env
  top = top_in - th * np.sqrt(env)
  bot = bot_in + 1.25 * th * np.sqrt(env)
  inside_x = _sig((1 - np.abs(t)) * mw, e)
  lips = _sig(np.minimum(y - top, bot - y), e) * inside_x
  lip_c = _tint(idp["skin"] * idp["lip_tone"], 0.9 + 0 * idp["skin"], 0.5, ch)
  lay(lips * face, lip_c)
  opening = _sig(np.minimum(y - top_in, bot_in - y), e) * inside_x * _sig(gap * env - 0.004, e)
  lay(opening * face, dark * 0.5)
  teeth = opening * _sig(top_in + 0.3 * (bot_in - top_in) - y, e)
  lay(0.8 * teeth * face, np.full((1, 1, 1, ch), 0.9, np.float32))
  lay(0.6 * _sig(0.007 - np.abs(y - centre), e) * inside_x * face * (1 - opening), dark)
  # Contempt dimple at the raised corner.
  dim = np.exp(-(((x - mw * 1.12) / 0.025)**2 + ((y - centre + 0.02) / 0.03)**2))
  lay(0.6 * np.clip(a["mouth_asym"], 0, 1) * dim * face, skin_c * 0.6)
  for s in (-1.0, 1.0):
    fold = _sig(0.009 - np.abs(x - s * (nw * 0.9 + 0.25 * (y - ny))), e) * _sig(y - ny, e) * _sig(my - y, e)
    lay(0.6 * np.clip(a["cheek_raise"], 0, 1) * fold * face, skin_c * 0.6)

  # Lighting: directional gradient and overall brightness.
  la, lamp, bright = col(pose[:, 4]), col(pose[:, 5]), col(pose[:, 6])
  light = bright * (1 + lamp * (np.cos(la) * gx[None] + np.sin(la) * gy[None]))
  return np.clip(img * light[..., None], 0, 1)


def _expression_aus(spec: FaceSpec, idp: dict[str, np.ndarray], labels: np.ndarray,
                    intensity: np.ndarray) -> np.ndarray:
  """AU activations of identities ``idp`` showing ``labels`` at ``intensity`` (no noise)."""
  protos = idp["protos"][np.arange(labels.shape[0]), labels]
  return idp["resting"] + (idp["gain"] * intensity)[:, None] * protos


def render(spec: FaceSpec, subjects: np.ndarray, labels: np.ndarray, poses: np.ndarray,
           intensity: np.ndarray | None = None, rng: np.random.Generator | None = None,
           chunk: int = 256) -> np.ndarray:
  """Renders identity ``subjects[i]`` with expression ``labels[i]`` in pose ``poses[i]``.

  ``intensity`` defaults to the peak (1.0).  With ``rng`` the per-image AU and pixel noise of the
  dataset are added; without it the rendering is clean.  Returns float32 (N, R, R, C) in [0, 1].
  """
  subjects = np.asarray(subjects, np.int64).reshape(-1)
  labels = np.asarray(labels, np.int64).reshape(-1)
  if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
    raise ValueError(f"expression labels must lie in [0, {spec.num_classes}), got {labels}")
  if subjects.size and (subjects.min() < 0 or subjects.max() >= spec.num_identities):
    raise ValueError(f"identities must lie in [0, {spec.num_identities}), got {subjects}")
  n = subjects.shape[0]
  intensity = np.ones(n, np.float32) if intensity is None else np.asarray(intensity, np.float32)
  out = np.empty((n, spec.image_size, spec.image_size, spec.channels), np.float32)
  for s in range(0, n, chunk):
    sl = slice(s, s + chunk)
    idp = identity_params(spec, subjects[sl])
    aus = _expression_aus(spec, idp, labels[sl], intensity[sl])
    if rng is not None:
      aus = aus + rng.normal(0, spec.au_noise, aus.shape).astype(np.float32)
    img = _render_aus(spec, idp, aus, np.asarray(poses[sl], np.float32))
    if rng is not None:
      img = img + rng.normal(0, spec.pixel_noise, img.shape).astype(np.float32)
    out[sl] = np.clip(img, 0, 1)
  return out


def render_truth(spec: FaceSpec, subjects: np.ndarray, labels: np.ndarray,
                 poses: np.ndarray) -> np.ndarray:
  """The clean peak-intensity rendering of each (identity, expression, pose): synthesis ground truth."""
  return render(spec, subjects, labels, poses)


def generate(spec: FaceSpec) -> dict[str, np.ndarray]:
  """The whole dataset: every identity x expression x frame, with its own jitter and noise.

  Returns ``image`` uint8 (N, R, R, C), ``label``, ``subject``, ``frame`` int32 (N,), ``pose``
  float32 (N, 7).  Row order is (identity, expression, frame).
  """
  k, f = spec.num_classes, spec.frames
  subj, lab, frm = (a.reshape(-1) for a in np.meshgrid(
      np.arange(spec.num_identities), np.arange(k), np.arange(f), indexing="ij"))
  poses = np.stack([
      sample_pose(np.random.default_rng([spec.seed, 2, int(i), int(c), int(j)]), 1)[0]
      for i, c, j in zip(subj, lab, frm)
  ]) if subj.size else np.zeros((0, len(POSE_FIELDS)), np.float32)
  images = np.empty((subj.size, spec.image_size, spec.image_size, spec.channels), np.uint8)
  for i in range(spec.num_identities):  # one noise stream per identity: chunk-size independent
    sl = slice(i * k * f, (i + 1) * k * f)
    img = render(spec, subj[sl], lab[sl], poses[sl], frame_intensity(f)[frm[sl]],
                 rng=np.random.default_rng([spec.seed, 3, i]))
    images[sl] = np.round(img * 255).astype(np.uint8)
  return dict(image=images, label=lab.astype(np.int32), subject=subj.astype(np.int32),
              frame=frm.astype(np.int32), pose=poses)
