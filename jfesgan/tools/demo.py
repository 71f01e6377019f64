"""A local web page to see a trained run at work: drop in a face photo (or pick a held-out face of
the run's dataset) and see the crop the networks get, the recogniser's class probabilities, the
face re-drawn with each expression, a slider between two expressions, and new people drawn from
the generator's prior.

  jfesgan demo --workdir runs/joint            # then open http://127.0.0.1:8765
  jfesgan demo --workdir runs/ck48/fold_0 --port 0 --max_upload_mb 4

The page is served by the standard library's threading HTTP server, with no web framework: the
project gains no dependency, the page works offline (no CDN, no telemetry), and the whole server
is this file, easy to audit.  It listens on 127.0.0.1 unless ``--host`` says otherwise.

What it accepts and keeps: an upload is refused before it is read when it is larger than
``--max_upload_mb`` or has no length, and before it is decoded when its first bytes are not those
of a PNG, JPEG, GIF, BMP, WebP or TIFF file; a damaged image, one of absurd size, or a photo in
which no face is found is answered with a message on the page.  Nothing sent is written anywhere
or logged (the log names the request path and status only); the slider sends the small crop back
with each request instead of the server keeping it.  Any failure of a request is answered as an
error of that request: the server keeps serving.

Photos are cut as the run's dataset was: for runs on pre-cropped faces (``detector="none"``, e.g.
CK+48 or the embedded faces) an image no larger than twice the run's side is taken as a crop
already, and a larger photo is searched for a face with OpenCV's Haar cascade (``pip install
'jfesgan[faces]'``), with the run's margin (at least 10 %).
"""

from __future__ import annotations

import base64
import functools
import http.server
import importlib.resources
import io
import ipaddress
import json
import os
import threading
import urllib.parse

import numpy as np
from absl import app, flags, logging
from PIL import Image

from jfesgan.data import faces, pipeline
from jfesgan.data.pipeline import to_float
from jfesgan.evaluation import grids
from jfesgan.evaluation.restored import RestoredGenerator, RestoredRecogniser
from jfesgan.run import workdir as workdir_lib
from jfesgan.run.flags import one_line_errors, parse_flags, quiet_tool

# The first bytes of the image formats the page accepts (checked before anything is decoded).
MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
         (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))
FORMATS = "PNG, JPEG, GIF, BMP, WebP or TIFF"


class DemoError(Exception):
  """A request the page answers with a message (HTTP ``status``), not a traceback."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status, self.message = status, message


def image_format(head: bytes) -> str | None:
  """The image format named by a file's first bytes, or None."""
  if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
    return "WebP"
  return next((name for magic, name in MAGIC if head.startswith(magic)), None)


def png_uri(image: np.ndarray) -> str:
  """A float image in [-1, 1] (H, W, C) as a PNG data URI."""
  pixels = grids.to_uint8(image)
  buf = io.BytesIO()
  Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(buf, "PNG")
  return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Demo:
  """The networks of a finished run and what the page asks of them (thread-safe)."""

  def __init__(self, workdir: str, max_upload_bytes: int = 8 << 20, heldout: int = 24):
    self.rec = RestoredRecogniser.load(workdir)
    self.gen = RestoredGenerator.load(workdir)
    self.workdir = self.rec.workdir
    self.max_upload_bytes = int(max_upload_bytes)
    self.classes = list(self.gen.class_names)
    self.size, self.channels = self.gen.image_size, self.gen.channels
    self._lock = threading.Lock()
    self.heldout, self.heldout_labels, self.heldout_note = self._heldout(heldout)

  def _heldout(self, n: int) -> tuple[np.ndarray, list[str], str]:
    """Up to ``n`` held-out faces of the run's dataset (spread over its classes), or none with
    the reason (e.g. the dataset is not on this machine)."""
    try:
      config, _ = workdir_lib.read_run(self.workdir)
      _, test = pipeline.train_test(config.data)
    except Exception as e:  # noqa: BLE001 - any reason to lack the data is shown, not raised
      return np.zeros((0, self.size, self.size, self.channels), np.uint8), [], (
          f"the run's held-out faces cannot be read here ({type(e).__name__}: {e})")
    idx = np.unique(np.linspace(0, len(test.label) - 1, min(n, len(test.label))).astype(int))
    return test.image[idx], [test.class_names[int(y)] for y in test.label[idx]], ""

  def info(self) -> dict:
    return {"run": os.path.basename(self.workdir.rstrip("/")), "classes": self.classes,
            "image_size": self.size, "channels": self.channels,
            "recogniser": self.rec.stage, "generator": self.gen.stage,
            "max_upload_bytes": self.max_upload_bytes, "heldout": len(self.heldout),
            "heldout_note": self.heldout_note}

  def heldout_faces(self) -> dict:
    return {"faces": [{"id": i, "label": lab, "image": png_uri(to_float(img))}
                      for i, (img, lab) in enumerate(zip(self.heldout, self.heldout_labels))],
            "note": self.heldout_note}

  # -- faces in -------------------------------------------------------------------------------

  def face_from_upload(self, data: bytes) -> np.ndarray:
    """The run-sized uint8 crop of an uploaded photo; DemoError for anything unusable."""
    if image_format(data[:16]) is None:
      raise DemoError(415, f"this file is not an image: send a {FORMATS} photo of a face")
    try:
      rgb = faces.decode_image(data, "the upload")
    except faces.BadInputError as e:
      raise DemoError(400, f"{e.reason}: send another photo") from e
    spec = self.gen.crop
    if spec.detector == "none" and max(rgb.shape[:2]) <= 2 * self.size:
      return faces.FaceCropper(spec)(rgb, "the upload")
    try:
      return self._photo_cropper(rgb, "the upload")
    except faces.BadInputError as e:
      raise DemoError(422, "no face found in this photo: try a frontal face, well lit, that "
                      "fills more of the picture") from e

  @functools.cached_property
  def _photo_cropper(self) -> faces.FaceCropper:
    """The cut for photos: OpenCV's face detector, the run's margin (at least 10 %) and its
    alignment; made on the first photo, kept for the next ones."""
    spec = self.gen.crop
    try:
      return faces.FaceCropper(faces.CropSpec(self.size, self.channels, "haar",
                                              max(spec.margin, 0.1), spec.align))
    except ImportError as e:
      raise DemoError(501, "finding a face in a photo needs OpenCV: pip install "
                      "'jfesgan[faces]' (or send a crop of the run's size)") from e

  def face_from_crop(self, data: bytes) -> np.ndarray:
    """A crop the page sent back (the one :meth:`analyse` returned), checked to be one."""
    if image_format(data[:16]) != "PNG":
      raise DemoError(415, "the slider sends back the face's PNG crop; this is not one")
    try:
      with Image.open(io.BytesIO(data)) as im:
        im.load()
        rgb = np.asarray(im.convert("RGB"), np.uint8)
    except (OSError, ValueError) as e:
      raise DemoError(400, f"the crop sent back is damaged ({e})") from e
    if rgb.shape[:2] != (self.size, self.size):
      raise DemoError(400, f"the crop sent back is {rgb.shape[1]}x{rgb.shape[0]} px, not the run's "
                      f"{self.size}x{self.size}")
    return faces.to_channels(rgb, self.channels)

  def face_from_heldout(self, index: str) -> np.ndarray:
    try:
      i = int(index)
      if not 0 <= i < len(self.heldout):
        raise ValueError
    except ValueError as e:
      raise DemoError(404, f"no held-out face {index!r} (there are {len(self.heldout)})") from e
    return self.heldout[i]

  # -- what the page shows --------------------------------------------------------------------

  def analyse(self, crop: np.ndarray) -> dict:
    """The crop, the recogniser's probabilities and the face with each expression."""
    x = to_float(crop[None])
    k = len(self.classes)
    with self._lock:
      probs = self.rec.probabilities(x)[0]
      translations = self.gen.translate(np.repeat(x, k, 0), np.eye(k, dtype=np.float32))
    return {"crop": png_uri(x[0]), "probabilities": [float(p) for p in probs],
            "predicted": self.classes[int(np.argmax(probs))],
            "translations": [png_uri(t) for t in translations]}

  def interpolate(self, crop: np.ndarray, a: str, b: str, t: str) -> dict:
    """The face with the expression mix (1 - t) a + t b."""
    ia, ib = (self._class(v) for v in (a, b))
    try:
      w = float(t)
      if not 0.0 <= w <= 1.0:
        raise ValueError
    except ValueError as e:
      raise DemoError(400, f"t={t!r} must be a number in [0, 1]") from e
    c = np.zeros((1, len(self.classes)), np.float32)
    c[0, ia] += 1.0 - w
    c[0, ib] += w
    with self._lock:
      image = self.gen.translate(to_float(crop[None]), c)[0]
    return {"image": png_uri(image)}

  def prior(self, seed: str, n: str, expression: str) -> dict:
    """``n`` new identities G(z, c) with z ~ U[-1, 1]^d drawn with ``seed``."""
    try:
      seed_i, n_i = int(seed), int(n)
      if not 1 <= n_i <= 16:
        raise ValueError
    except ValueError as e:
      raise DemoError(400, f"seed={seed!r} and n={n!r} must be integers, 1 <= n <= 16") from e
    k = self._class(expression)
    z = np.random.default_rng(seed_i).uniform(-1, 1, (n_i, self.gen.latent_dim)).astype(np.float32)
    c = np.zeros((n_i, len(self.classes)), np.float32)
    c[:, k] = 1.0
    with self._lock:
      images = self.gen.decode(z, c)
    return {"faces": [png_uri(im) for im in images]}

  def _class(self, name: str) -> int:
    if name not in self.classes:
      raise DemoError(400, f"expression {name!r} is not one of the run's {self.classes}")
    return self.classes.index(name)


@functools.cache
def page() -> bytes:
  """The page (``demo.html`` beside this file: HTML, CSS and script, no external resource)."""
  return (importlib.resources.files("jfesgan.tools") / "demo.html").read_bytes()


def make_handler(demo: Demo):
  """The request handler class serving ``demo``."""

  class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "jfesgan-demo"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
      # The path and status only: never anything the user sent.
      logging.info("demo: %s", format % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
      self.send_response(status)
      self.send_header("Content-Type", content_type)
      self.send_header("Content-Length", str(len(body)))
      self.send_header("Cache-Control", "no-store")
      self.send_header("X-Content-Type-Options", "nosniff")
      self.end_headers()
      self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
      self._send(status, json.dumps(payload).encode(), "application/json")

    def _body(self) -> bytes:
      """The request's body, refused before reading when it is too large or of unknown length."""
      length = self.headers.get("Content-Length")
      if self.headers.get("Transfer-Encoding") or length is None:
        self.close_connection = True
        raise DemoError(411, "send the photo with its length (Content-Length)")
      try:
        n = int(length)
      except ValueError as e:
        self.close_connection = True
        raise DemoError(400, f"bad Content-Length {length!r}") from e
      if n > demo.max_upload_bytes:
        self.close_connection = True  # the unread body must not be taken for the next request
        raise DemoError(413, f"the file is {n / 2**20:.1f} MB; the limit is "
                        f"{demo.max_upload_bytes / 2**20:.1f} MB")
      if n == 0:
        raise DemoError(400, "the upload is empty")
      return self.rfile.read(n)

    def _route(self, method: str) -> None:
      url = urllib.parse.urlsplit(self.path)
      q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
      try:
        if method == "GET" and url.path in ("/", "/index.html"):
          return self._send(200, page(), "text/html; charset=utf-8")
        if method == "GET" and url.path == "/api/info":
          return self._json(200, demo.info())
        if method == "GET" and url.path == "/api/heldout":
          return self._json(200, demo.heldout_faces())
        if method == "GET" and url.path == "/api/prior":
          return self._json(200, demo.prior(q.get("seed", "0"), q.get("n", "6"),
                                            q.get("expression", demo.classes[0])))
        if method == "POST" and url.path == "/api/analyse":
          if "heldout" in q:
            return self._json(200, demo.analyse(demo.face_from_heldout(q["heldout"])))
          return self._json(200, demo.analyse(demo.face_from_upload(self._body())))
        if method == "POST" and url.path == "/api/interpolate":
          crop = demo.face_from_crop(self._body())
          return self._json(200, demo.interpolate(crop, q.get("a", ""), q.get("b", ""),
                                                  q.get("t", "")))
        raise DemoError(404, f"no such page: {method} {url.path}")
      except DemoError as e:
        self._json(e.status, {"error": e.message})
      except Exception as e:  # noqa: BLE001 - a failed request is answered; the server goes on
        logging.exception("demo: %s %s failed", method, url.path)
        self._json(500, {"error": f"the server failed on this request ({type(e).__name__}); "
                                  "it is still running"})

    def do_GET(self):  # noqa: N802 - the base class's name
      self._route("GET")

    def do_POST(self):  # noqa: N802 - the base class's name
      self._route("POST")

  return Handler


def serve(demo: Demo, host: str = "127.0.0.1", port: int = 8765) -> http.server.ThreadingHTTPServer:
  """A server for ``demo`` bound to ``host``:``port`` (0: any free port), not yet serving: call
  ``serve_forever()`` (the command) or run it in a thread (the tests)."""
  server = http.server.ThreadingHTTPServer((host, port), make_handler(demo))
  server.daemon_threads = True
  return server


def _is_loopback(host: str) -> bool:
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return host == "localhost"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  quiet_tool()
  logging.set_verbosity(logging.WARNING)
  demo = Demo(f.workdir, max_upload_bytes=int(f.max_upload_mb * 2**20))
  server = serve(demo, f.host, f.port)
  host, port = server.server_address[:2]
  if not _is_loopback(f.host):
    print(f"warning: listening on {host}, reachable from other machines", flush=True)
  print(f"jfesgan demo of {demo.workdir} ({demo.rec.stage} recogniser, {demo.gen.stage} "
        f"generator): http://{host}:{port}/  (Ctrl-C stops it)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()


def run() -> None:
  """``jfesgan demo`` (and ``python -m jfesgan.tools.demo``)."""
  flags.DEFINE_string("workdir", None, "Workdir of a finished run with a recogniser and a "
                      "generator (e.g. the main job's).", required=True)
  flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (default: this machine only).")
  flags.DEFINE_integer("port", 8765, "Port (0: any free one; the address is printed).")
  flags.DEFINE_float("max_upload_mb", 8.0, "Largest photo accepted, in MB (refused unread above).")
  app.run(one_line_errors(main), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
