"""Reading face images and cropping faces: done once, when a database's TFDS builder is prepared.

Databases that ship whole frames (CK+, Oulu-CASIA, MMI, JAFFE) are cropped around the face found
by OpenCV's frontal-face Haar cascade, whose model file ships inside the ``opencv-python-headless``
wheel (``pip install 'jfesgan[faces]'``; OpenCV 5 dropped ``CascadeClassifier``, hence ``<5``):
nothing is downloaded at run time.  Pre-cropped databases (CK+48, FER2013, RAF-DB aligned) use
``detector="none"``: a centred square crop, resized.

Every crop is a square centred on the face box and ``1 + 2 * margin`` times its side, resized to
``size`` pixels, so faces are centred and scaled the same way across a database.  A region that
leaves the frame is padded by repeating the border pixels.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

DETECTORS = ("haar", "none")


class BadInputError(ValueError):
  """A file of a database that cannot be used; ``path`` names it."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = str(path), reason


# Sides outside this range are not face images (a 1x1 placeholder, a 4000x4000 scan).
MIN_SIDE, MAX_SIDE = 16, 3000


def load_image(path: str) -> np.ndarray:
  """An image file as uint8 (H, W, 3) RGB; raises BadInputError naming the file if unreadable,
  or if a side is outside [MIN_SIDE, MAX_SIDE] pixels (checked before decoding the pixels)."""
  return _read_image(path, path)


def decode_image(data: bytes, name: str) -> np.ndarray:
  """Image bytes (a file's content, e.g. an upload) as uint8 (H, W, 3) RGB, checked as
  :func:`load_image` checks a file; errors name ``name``."""
  return _read_image(io.BytesIO(data), name)


def _read_image(source, name: str) -> np.ndarray:
  try:
    with Image.open(source) as im:
      w, h = im.size
      if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
        raise BadInputError(name, f"image of {w}x{h} px: sides must be in [{MIN_SIDE}, {MAX_SIDE}] "
                            "px for a face crop")
      im.load()
      return np.asarray(im.convert("RGB"), dtype=np.uint8)
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    if isinstance(e, BadInputError):
      raise
    raise BadInputError(name, f"unreadable or corrupt image ({type(e).__name__}: {e})") from e


def to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
  """(H, W, 3) uint8 RGB -> (H, W, channels) uint8 (ITU-R 601 luma for one channel)."""
  if channels == 3:
    return rgb
  if channels != 1:
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]


@dataclasses.dataclass(frozen=True)
class Box:
  """A face box in pixels: top-left corner and side lengths; with alignment, also the centres of
  the eyes found in it ((x, y) of the eye on the image's left, then on its right)."""

  x: float
  y: float
  w: float
  h: float
  eyes: tuple[tuple[float, float], tuple[float, float]] | None = None


# An eye finder: (RGB uint8 image, face box) -> the two eye centres (image's left eye first), or
# None when it does not find both.
EyeFinder = Callable[[np.ndarray, "Box"], "tuple[tuple[float, float], tuple[float, float]] | None"]


class HaarEyes:
  """OpenCV's eye Haar cascade (``haarcascade_eye.xml``, inside the opencv wheel like the face
  cascade: nothing is downloaded): the largest eye found in each half of the upper part of a face
  box."""

  def __init__(self):
    try:
      import cv2  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("eye alignment needs OpenCV 4: pip install 'jfesgan[faces]'") from e
    self._cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades,
                                                       "haarcascade_eye.xml"))
    if self._cascade.empty():
      raise RuntimeError("could not load OpenCV's haarcascade_eye.xml")
    self._cv2 = cv2

  def __call__(self, rgb: np.ndarray, box: Box):
    x0, y0 = max(0, int(box.x)), max(0, int(box.y))
    x1, y1 = int(box.x + box.w), int(box.y + 0.6 * box.h)
    gray = self._cv2.equalizeHist(to_channels(rgb, 1)[y0:y1, x0:x1, 0])
    if gray.size == 0:
      return None
    side = max(4, int(0.12 * box.w))
    found = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4,
                                           minSize=(side, side), maxSize=(int(0.45 * box.w),) * 2)
    centres = [(x0 + x + w / 2, y0 + y + h / 2, w * h) for x, y, w, h in found]
    mid = box.x + box.w / 2
    left = [c for c in centres if c[0] < mid]
    right = [c for c in centres if c[0] >= mid]
    if not left or not right:
      return None
    (lx, ly, _), (rx, ry, _) = max(left, key=lambda c: c[2]), max(right, key=lambda c: c[2])
    return (float(lx), float(ly)), (float(rx), float(ry))


# Where aligned crops put the eyes: their distance and height as fractions of the face box's side
# (about where they sit in OpenCV's face boxes), so that an aligned crop frames the face as an
# unaligned one does on average, margin included.
EYE_DISTANCE, EYE_HEIGHT = 0.40, 0.38


class HaarDetector:
  """OpenCV's frontal-face Haar cascade (its XML ships in the opencv wheel)."""

  def __init__(self, min_face_frac: float = 0.15):
    try:
      import cv2  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("face detection needs OpenCV 4: pip install 'jfesgan[faces]' "
                        "(opencv-python-headless<5)") from e
    if not hasattr(cv2, "CascadeClassifier"):
      raise ImportError(f"OpenCV {cv2.__version__} has no CascadeClassifier (removed in OpenCV 5): "
                        "pip install 'opencv-python-headless<5'")
    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    self._cascade = cv2.CascadeClassifier(path)
    if self._cascade.empty():
      raise RuntimeError(f"could not load the Haar cascade {path}")
    self._cv2 = cv2
    self.min_face_frac = min_face_frac

  def __call__(self, rgb: np.ndarray) -> Box | None:
    """The largest frontal face in the image, or None."""
    gray = to_channels(rgb, 1)[..., 0]
    gray = self._cv2.equalizeHist(gray)
    side = int(self.min_face_frac * min(gray.shape))
    found = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                           minSize=(side, side))
    if len(found) == 0:
      return None
    x, y, w, h = max(found, key=lambda b: b[2] * b[3])
    return Box(float(x), float(y), float(w), float(h))


@dataclasses.dataclass(frozen=True)
class CropSpec:
  """How faces are cut out: output side, channels, detector and margin around the face box."""

  size: int = 48
  channels: int = 1
  detector: str = "haar"
  margin: float = 0.1
  # Rotate and scale each face so that its eyes sit level at fixed positions (found by OpenCV's
  # eye cascade inside the face box); a face whose eyes are not both found is cut unaligned.
  align: bool = False

  def __post_init__(self):
    if self.detector not in DETECTORS:
      raise ValueError(f"detector={self.detector!r} is not one of {DETECTORS}")
    if self.size < 8 or self.channels not in (1, 3) or not 0 <= self.margin < 1:
      raise ValueError(f"bad crop spec {self}: size >= 8, channels 1 or 3, 0 <= margin < 1")

  @property
  def tag(self) -> str:
    """A short name for builder configs: '48px_g_haar_m10'."""
    tag = (f"{self.size}px_{'g' if self.channels == 1 else 'rgb'}_{self.detector}"
           f"_m{round(100 * self.margin)}")
    return tag + ("_eyes" if self.align else "")


# A face detector: RGB uint8 image -> the largest face's box, or None.
Detector = Callable[[np.ndarray], "Box | None"]


class FaceCropper:
  """Finds (or assumes) the face and returns the standard crop of an image.

  ``detector`` replaces the one ``spec.detector`` names (e.g. a stub in tests, or another
  detector); with ``spec.detector == "none"`` the image is taken to be the face already.
  """

  def __init__(self, spec: CropSpec, detector: Detector | None = None,
               eyes: EyeFinder | None = None):
    self.spec = spec
    if spec.detector == "none":
      self._detector = None
    else:
      self._detector = detector if detector is not None else HaarDetector()
    self._eyes = (eyes if eyes is not None else HaarEyes()) if spec.align else None
    # Faces cut unaligned because their eyes were not both found (with ``spec.align``).
    self.unaligned = 0

  def box(self, rgb: np.ndarray, path: str) -> Box:
    """The face box: detected, or the centred square for ``detector="none"``."""
    h, w = rgb.shape[:2]
    if self._detector is None:
      side = min(h, w)
      return self._with_eyes(rgb, Box((w - side) / 2, (h - side) / 2, side, side))
    found = self._detector(rgb)
    if found is None:
      raise BadInputError(path, "no face found by the Haar detector")
    return self._with_eyes(rgb, found)

  def _with_eyes(self, rgb: np.ndarray, box: Box) -> Box:
    if self._eyes is None:
      return box
    eyes = self._eyes(rgb, box)
    if eyes is None:
      self.unaligned += 1
      return box
    return dataclasses.replace(box, eyes=eyes)

  def crop(self, rgb: np.ndarray, box: Box) -> np.ndarray:
    """The square crop around ``box`` (margin added), resized, as (size, size, channels) uint8;
    for a box with eyes, the aligned crop (:meth:`aligned`)."""
    if box.eyes is not None:
      return self.aligned(rgb, box.eyes)
    side = max(box.w, box.h) * (1 + 2 * self.spec.margin)
    if self._detector is None:  # The image is the face already: no margin beyond its borders.
      side = max(box.w, box.h)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    h, w = rgb.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
      rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
      x0, y0 = x0 + pad, y0 + pad
    region = Image.fromarray(rgb[y0:y0 + s, x0:x0 + s])
    region = region.resize((self.spec.size, self.spec.size), Image.Resampling.BICUBIC
                           if s < self.spec.size else Image.Resampling.BOX)
    return to_channels(np.asarray(region, dtype=np.uint8), self.spec.channels)

  def aligned(self, rgb: np.ndarray, eyes) -> np.ndarray:
    """The crop rotated so that the eyes are level, scaled so that they are ``EYE_DISTANCE`` of a
    face box apart, centred between them at ``EYE_HEIGHT`` of the box from its top (margin added
    around the box as for unaligned crops); pixels beyond the image repeat its border."""
    (lx, ly), (rx, ry) = eyes
    n = self.spec.size
    m = 0.0 if self._detector is None else self.spec.margin
    face = n / (1 + 2 * m)  # the face box's side in output pixels
    dist = float(np.hypot(rx - lx, ry - ly))
    if dist < 1e-6:
      raise BadInputError("eyes", f"both eyes found at one point {eyes}")
    scale = EYE_DISTANCE * face / dist  # output pixels per input pixel
    angle = float(np.arctan2(ry - ly, rx - lx))
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    out_c = (n / 2, m * face + EYE_HEIGHT * face)  # where the eyes' midpoint lands
    in_c = ((lx + rx) / 2, (ly + ry) / 2)
    # Output pixel (u, v) shows input point in_c + R(angle) (u - out_c) / scale.
    corners = np.array([[u, v] for u in (0, n) for v in (0, n)], np.float64) - out_c
    src = np.stack([cos * corners[:, 0] - sin * corners[:, 1],
                    sin * corners[:, 0] + cos * corners[:, 1]], 1) + in_c
    h, w = rgb.shape[:2]
    pad = int(np.ceil(max(0, -src.min(), src[:, 0].max() - w, src[:, 1].max() - h))) + 2
    if pad:
      rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    cx, cy = in_c[0] + pad, in_c[1] + pad
    a, b = cos, -sin
    d, e = sin, cos
    coeffs = (a, b, cx - a * out_c[0] - b * out_c[1], d, e, cy - d * out_c[0] - e * out_c[1])
    # Supersample when shrinking (the box filter of unaligned crops), then resize to n.
    k = max(1, int(np.ceil(1 / scale)))
    big = Image.fromarray(rgb).transform(
        (n * k, n * k), Image.Transform.AFFINE,
        tuple(c / k if i in (0, 1, 3, 4) else c for i, c in enumerate(coeffs)),
        resample=Image.Resampling.BILINEAR)
    if k > 1:
      big = big.resize((n, n), Image.Resampling.BOX)
    return to_channels(np.asarray(big, dtype=np.uint8), self.spec.channels)

  def __call__(self, rgb: np.ndarray, path: str) -> np.ndarray:
    return self.crop(rgb, self.box(rgb, path))
