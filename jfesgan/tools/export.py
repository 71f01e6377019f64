"""Export a trained recogniser for serving without the training code.

  jfesgan export --workdir runs/ck48 --out exported/ck48 [--stage real]

Writes ``recogniser.jax_export`` (``jax.export``: serialized StableHLO with the weights inside,
any batch size: the batch dimension is symbolic), ``recogniser.json`` (class names, the input it
takes, how faces were cut out) and ``serve.py``, the loader, which needs only ``jax`` and
``numpy``::

  from serve import load
  predict, meta = load("exported/ck48")
  probs = predict(images)   # float32 (N, H, W, C) in [-1, 1] -> (N, classes)
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

from jfesgan.evaluation.restored import RestoredRecogniser
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
  with open(os.path.join(out_dir, "recogniser.json"), "w") as f:
    json.dump(meta, f, indent=2)
  with open(os.path.join(out_dir, "serve.py"), "w") as f:
    f.write(SERVE)
  return meta


def load(out_dir: str):
  """The exported recogniser in ``out_dir``: (predict, meta), as ``serve.py`` gives it."""
  namespace: dict = {}
  exec(compile(SERVE, "serve.py", "exec"), namespace)  # the very loader that was written out
  return namespace["load"](out_dir)


def main(argv):
  del argv
  f = flags.FLAGS
  quiet_tool()
  rec = RestoredRecogniser.load(f.workdir, f.stage)
  meta = export_recogniser(rec, f.out)
  predict, _ = load(f.out)
  x = np.random.default_rng(0).uniform(-1, 1, (5, rec.image_size, rec.image_size, rec.channels))
  x = x.astype(np.float32)
  diff = float(np.max(np.abs(predict(x) - rec.probabilities(x))))
  print(f"exported the {rec.stage} R of {rec.workdir} to {f.out} ({meta['class_names']}); "
        f"max |exported - original| on 5 random images: {diff:.2e}", flush=True)


def run() -> None:
  """``jfesgan export`` (and ``python -m jfesgan.tools.export``)."""
  flags.DEFINE_string("workdir", None, "Workdir of the trained run.", required=True)
  flags.DEFINE_string("out", None, "Folder to write the exported recogniser to.", required=True)
  flags.DEFINE_string("stage", None, "'joint' or 'real' (default: joint if finished, else real).")
  app.run(one_line_errors(main), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
