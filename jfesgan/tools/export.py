"""Export a trained run's networks for serving without the training code.

  jfesgan export --workdir runs/ck48 --out exported/ck48 [--stage real] [--format jax|onnx]

``--format jax`` (the default) writes the recogniser as ``recogniser.jax_export`` (``jax.export``:
serialized StableHLO with the weights inside, any batch size: the batch dimension is symbolic),
``recogniser.json`` (class names, the input it takes, how faces were cut out) and ``serve.py``,
the loader, which needs only ``jax`` and ``numpy``::

  from serve import load
  predict, meta = load("exported/ck48")
  probs = predict(images)   # float32 (N, H, W, C) in [-1, 1] -> (N, classes)

``--format onnx`` writes ONNX models (opset 18, any batch size) that ONNX Runtime, or any other
ONNX consumer, runs with no JAX at all: ``recogniser.onnx`` (images -> class probabilities) and,
when the run has a generator, ``generator_translate.onnx`` ((images, expression weights) -> the
faces with those expressions, as the run's translations are made, edit mask included) and
``generator_decode.onnx`` ((identity codes, expression weights) -> new faces), beside the same
``recogniser.json`` and ``serve_onnx.py``, which needs only ``onnxruntime`` and ``numpy``::

  from serve_onnx import load, load_generator
  predict, meta = load("exported/ck48")
  translate, decode = load_generator("exported/ck48")

The graphs are written from the networks' own jaxprs (:mod:`jfesgan.tools.onnx_graph`); the
command checks each against the original on random inputs and prints the largest difference.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import export as jax_export

from jfesgan.evaluation.restored import RestoredGenerator, RestoredRecogniser
from jfesgan.run.flags import one_line_errors, parse_flags, quiet_tool

SERVE = '''"""Loader of a recogniser exported by jfesgan (needs only jax and numpy)."""
import json
import os

import numpy as np
from jax import export


def load(directory):
  """(predict, meta): predict(images float32 (N, H, W, C) in [-1, 1]) -> probabilities (N, K)."""
  with open(os.path.join(directory, "recogniser.json")) as f:
    meta = json.load(f)
  with open(os.path.join(directory, "recogniser.jax_export"), "rb") as f:
    exported = export.deserialize(bytearray(f.read()))
  return (lambda images: np.asarray(exported.call(np.asarray(images, np.float32)))), meta
'''


def export_recogniser(rec: RestoredRecogniser, out_dir: str) -> dict:
  """Writes the exported recogniser to ``out_dir``; returns its metadata."""
  params = jax.tree.map(jnp.asarray, rec.params)

  def probabilities(x):
    return jax.nn.softmax(rec.model.apply({"params": params}, x)[1], -1)

  (batch,) = jax_export.symbolic_shape("batch")
  spec = jax.ShapeDtypeStruct((batch, rec.image_size, rec.image_size, rec.channels), jnp.float32)
  exported = jax_export.export(jax.jit(probabilities))(spec)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "recogniser.jax_export"), "wb") as f:
    f.write(exported.serialize())
  meta = {"class_names": list(rec.class_names),
          "input": {"shape": ["batch", rec.image_size, rec.image_size, rec.channels],
                    "dtype": "float32", "range": [-1.0, 1.0]},
          "crop": dataclasses.asdict(rec.crop), "source": {"workdir": rec.workdir,
                                                           "stage": rec.stage},
          "platforms": list(exported.platforms)}
  return _write_meta_and_loader(out_dir, meta, "serve.py", SERVE)


def _write_meta_and_loader(out_dir: str, meta: dict, loader: str, text: str) -> dict:
  with open(os.path.join(out_dir, "recogniser.json"), "w") as f:
    json.dump(meta, f, indent=2)
  with open(os.path.join(out_dir, loader), "w") as f:
    f.write(text)
  return meta


def _loader(text: str, name: str) -> dict:
  """The namespace of a loader compiled from the very text that was written out."""
  namespace: dict = {}
  exec(compile(text, name, "exec"), namespace)
  return namespace


def load(out_dir: str):
  """The exported recogniser in ``out_dir``: (predict, meta), as ``serve.py`` gives it."""
  return _loader(SERVE, "serve.py")["load"](out_dir)


SERVE_ONNX = '''"""Loader of networks exported by jfesgan as ONNX (needs only onnxruntime and numpy)."""
import json
import os

import numpy as np
import onnxruntime as ort


def _session(path):
  return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def load(directory):
  """(predict, meta): predict(images float32 (N, H, W, C) in [-1, 1]) -> probabilities (N, K)."""
  with open(os.path.join(directory, "recogniser.json")) as f:
    meta = json.load(f)
  session = _session(os.path.join(directory, "recogniser.onnx"))
  return (lambda images: session.run(None, {"image": np.asarray(images, np.float32)})[0]), meta


def load_generator(directory):
  """(translate, decode): translate(images (N, H, W, C), expressions (N, K)) -> images, the faces
  with those expression weights (one-hot, or mixed); decode(codes (N, d), expressions (N, K))
  -> new faces from identity codes (the prior: uniform in [-1, 1]^d).  Images in [-1, 1]."""
  t = _session(os.path.join(directory, "generator_translate.onnx"))
  d = _session(os.path.join(directory, "generator_decode.onnx"))
  f32 = lambda a: np.asarray(a, np.float32)
  return (lambda images, c: t.run(None, {"image": f32(images), "expression": f32(c)})[0],
          lambda codes, c: d.run(None, {"code": f32(codes), "expression": f32(c)})[0])
'''


def _portable(model):
  """The module as it computes on any backend, for tracing: XLA's convolutions, float32."""
  return model.clone(impl="xla", dtype=jnp.float32)


def export_onnx(rec: RestoredRecogniser, gen: RestoredGenerator | None, out_dir: str) -> dict:
  """Writes ``recogniser.onnx`` (and the generator's two graphs with ``gen``), their metadata and
  ``serve_onnx.py`` to ``out_dir``; returns the metadata."""
  from jfesgan.tools import onnx_graph  # needs the onnx package: pip install -e ".[onnx]"
  os.makedirs(out_dir, exist_ok=True)
  size, ch = rec.image_size, rec.channels
  r = _portable(rec.model)
  graphs = {"recogniser.onnx": onnx_graph.to_onnx(
      lambda p, x: jax.nn.softmax(r.apply({"params": p}, x)[1], -1), rec.params,
      {"image": (size, size, ch)}, ["probabilities"], doc="jfesgan recogniser")}
  meta = {"class_names": list(rec.class_names),
          "input": {"shape": ["batch", size, size, ch], "dtype": "float32", "range": [-1.0, 1.0]},
          "crop": dataclasses.asdict(rec.crop),
          "source": {"workdir": rec.workdir, "stage": rec.stage}, "format": "onnx",
          "opset": onnx_graph.OPSET, "files": ["recogniser.onnx"]}
  if gen is not None:
    g = _portable(gen.model)
    k = len(gen.class_names)
    graphs["generator_translate.onnx"] = onnx_graph.to_onnx(
        lambda p, x, c: g.apply({"params": p}, x, c), gen.params,
        {"image": (gen.image_size, gen.image_size, gen.channels), "expression": (k,)},
        ["translation"], doc="jfesgan generator: faces with other expressions")
    graphs["generator_decode.onnx"] = onnx_graph.to_onnx(
        lambda p, z, c: g.apply({"params": p}, z, c, method="decode"), gen.params,
        {"code": (gen.latent_dim,), "expression": (k,)}, ["image"],
        doc="jfesgan generator: new identities from codes")
    meta["generator"] = {"stage": gen.stage, "latent_dim": gen.latent_dim,
                         "class_names": list(gen.class_names)}
    meta["files"] += ["generator_translate.onnx", "generator_decode.onnx"]
  for name, model in graphs.items():
    with open(os.path.join(out_dir, name), "wb") as f:
      f.write(model.SerializeToString())
  return _write_meta_and_loader(out_dir, meta, "serve_onnx.py", SERVE_ONNX)


def onnx_loader() -> dict:
  """``serve_onnx.py``'s namespace (its ``load(folder)`` and ``load_generator(folder)``),
  compiled from the very loader that is written out."""
  return _loader(SERVE_ONNX, "serve_onnx.py")


def main(argv):
  del argv
  f = flags.FLAGS
  quiet_tool()
  rec = RestoredRecogniser.load(f.workdir, f.stage)
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (5, rec.image_size, rec.image_size, rec.channels)).astype(np.float32)
  if f.format == "jax":
    meta = export_recogniser(rec, f.out)
    predict, _ = load(f.out)
    diff = float(np.max(np.abs(predict(x) - rec.probabilities(x))))
    print(f"exported the {rec.stage} R of {rec.workdir} to {f.out} ({meta['class_names']}); "
          f"max |exported - original| on 5 random images: {diff:.2e}", flush=True)
    return
  try:
    gen = RestoredGenerator.load(f.workdir)
  except FileNotFoundError:
    gen = None  # a recogniser-only run
  meta = export_onnx(rec, gen, f.out)
  serve = onnx_loader()
  predict, _ = serve["load"](f.out)
  lines = [f"recogniser.onnx ({rec.stage} R): max |ONNX - JAX| "
           f"{np.max(np.abs(predict(x) - rec.probabilities(x))):.2e}"]
  if gen is not None:
    translate, decode = serve["load_generator"](f.out)
    c = np.eye(len(gen.class_names), dtype=np.float32)[np.arange(5) % len(gen.class_names)]
    z = rng.uniform(-1, 1, (5, gen.latent_dim)).astype(np.float32)
    lines.append(f"generator_translate.onnx ({gen.stage} g_ema): "
                 f"{np.max(np.abs(translate(x, c) - gen.translate(x, c))):.2e}")
    lines.append(f"generator_decode.onnx: {np.max(np.abs(decode(z, c) - gen.decode(z, c))):.2e}")
  print(f"exported {', '.join(meta['files'])} of {rec.workdir} to {f.out} (serve_onnx.py needs "
        "onnxruntime and numpy only); on 5 random inputs:", *lines, sep="\n  ", flush=True)


def run() -> None:
  """``jfesgan export`` (and ``python -m jfesgan.tools.export``)."""
  flags.DEFINE_string("workdir", None, "Workdir of the trained run.", required=True)
  flags.DEFINE_string("out", None, "Folder to write the exported recogniser to.", required=True)
  flags.DEFINE_string("stage", None, "The recogniser's stage, 'joint' or 'real' (default: joint "
                      "if finished, else real).")
  flags.DEFINE_enum("format", "jax", ["jax", "onnx"], "jax: jax.export + serve.py (jax, numpy); "
                    "onnx: ONNX graphs of the recogniser and the generator + serve_onnx.py "
                    "(onnxruntime, numpy).")
  app.run(one_line_errors(main), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
