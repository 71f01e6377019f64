"""The tools on a tiny run made here: predict, evaluate on another database, export, synthesize."""

import csv
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jfesgan.data import faces, pipeline
from jfesgan.data.pipeline import to_float
from jfesgan.evaluation.restored import RestoredGenerator, RestoredRecogniser
from jfesgan.run import workdir as workdir_lib
from jfesgan.tools import evaluate as evaluate_lib
from jfesgan.tools import export as export_lib
from jfesgan.tools import predict as predict_lib
from jfesgan.tools import synthesize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
  cfg, workdir = tiny_run
  tmp = tmp_path_factory.mktemp("tools")
  _, test = pipeline.train_test(cfg.data)
  folder = tmp / "faces"
  folder.mkdir()
  paths = []
  for i in range(5):
    p = str(folder / f"face{i}.png")
    Image.fromarray(test.image[i].squeeze(-1)).save(p)
    paths.append(p)
  return cfg, workdir, test, paths, tmp


def test_predict_writes_probabilities_and_labels(run):
  cfg, workdir, test, paths, tmp = run
  rec = RestoredRecogniser.load(workdir)
  assert rec.stage == "joint"
  probs, rate = predict_lib.predict(rec, predict_lib.image_paths([os.path.dirname(paths[0])]))
  assert probs.shape == (5, 7) and rate > 0
  np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
  # The same as the recogniser applied to the dataset's own arrays (the crop is the identity here).
  np.testing.assert_allclose(probs, rec.probabilities(to_float(test.image[:5])), rtol=1e-5,
                             atol=1e-6)
  out = str(tmp / "p.csv")
  predict_lib.write_csv(out, paths, probs, rec.class_names)
  with open(out) as f:
    rows = list(csv.reader(f))
  assert rows[0][:2] == ["path", "label"] and len(rows) == 6 and rows[1][1] in rec.class_names
  assert RestoredRecogniser.load(workdir, "real").stage == "real"


def test_predict_and_load_errors_name_the_input(run, tmp_path):
  _, workdir, _, _, _ = run
  rec = RestoredRecogniser.load(workdir)
  notes = tmp_path / "notes.png"
  notes.write_text("not an image")
  with pytest.raises(faces.BadInputError, match="notes.png: unreadable or corrupt image"):
    predict_lib.predict(rec, [str(notes)])
  with pytest.raises(faces.BadInputError, match="nowhere.png: no such file"):
    predict_lib.image_paths([str(tmp_path / "nowhere.png")])
  with pytest.raises(FileNotFoundError, match="not the workdir of a finished jfesgan run"):
    RestoredRecogniser.load(str(tmp_path))
  with pytest.raises(ValueError, match="stage 'fesgan' has no recogniser"):
    RestoredRecogniser.load(workdir, "fesgan")


def test_a_damaged_run_is_named_by_its_file(run, tmp_path):
  """Every reader of a finished run names the file that is wrong and what is wrong with it: a
  truncated config.json, a garbage summary.json, and a config.json whose network no longer fits
  the checkpoint (an edited image size) are each one error naming the file, not a parser's or
  Flax's traceback."""
  _, workdir, _, paths, _ = run
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  config_path, summary_path = os.path.join(copy, "config.json"), os.path.join(copy, "summary.json")
  config_text = open(config_path).read()
  open(config_path, "w").write(config_text[:len(config_text) // 2])
  with pytest.raises(ValueError, match=re.escape(config_path) + ": not a valid JSON file"):
    RestoredRecogniser.load(copy)
  with pytest.raises(ValueError, match=re.escape(config_path) + ": not a valid JSON file"):
    RestoredGenerator.load(copy)
  # The tools say it in one line, without a traceback.
  out = subprocess.run([sys.executable, "-m", "jfesgan.tools.predict", "--workdir", copy,
                        paths[0]], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
  assert out.stderr.strip().splitlines()[-1].startswith(
      f"jfesgan: {config_path}: not a valid JSON file"), out.stderr[-500:]
  edited = json.loads(config_text)
  edited["data"]["image_size"] = 2 * edited["data"]["image_size"]
  json.dump(edited, open(config_path, "w"))
  for load in (RestoredRecogniser.load, RestoredGenerator.load):
    with pytest.raises(ValueError, match="does not fit the network that " + re.escape(config_path)):
      load(copy)
  open(config_path, "w").write(config_text)
  open(summary_path, "wb").write(b"\x00garbage")
  with pytest.raises(ValueError, match=re.escape(summary_path) + ": not a valid JSON file"):
    RestoredRecogniser.load(copy)
  with pytest.raises(ValueError, match=re.escape(summary_path)):
    workdir_lib.read_summary(copy)


def test_a_run_about_to_rewrite_an_unreadable_summary_says_so(tmp_path, caplog):
  path = tmp_path / "summary.json"
  path.write_text('{"cut')
  with caplog.at_level(logging.WARNING):
    workdir_lib.warn_if_unreadable(str(path))
  assert f"{path}: not a valid JSON file" in caplog.text and "writes it anew" in caplog.text
  caplog.clear()
  path.write_text("{}")
  workdir_lib.warn_if_unreadable(str(path))
  workdir_lib.warn_if_unreadable(str(tmp_path / "absent.json"))
  assert not caplog.text


@pytest.mark.slow
def test_predict_command_line(run, tmp_path):
  _, workdir, _, paths, _ = run
  out = subprocess.run([sys.executable, "-m", "jfesgan.tools.predict", "--workdir", workdir,
                        "--out", str(tmp_path / "p.csv"), *paths[:2]], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "2 images," in out.stdout and os.path.isfile(tmp_path / "p.csv")


def test_evaluate_on_another_database_maps_and_reports_classes(run, tmp_path):
  cfg, workdir, _, _, _ = run
  other = cfg.data.copy_and_resolve_references()
  other.data_seed = 5  # other faces: another "database"
  other.data_dir = str(tmp_path / "tfds")
  data = evaluate_lib.test_data(other)
  rec = RestoredRecogniser.load(workdir, "real")
  scores = evaluate_lib.evaluate(rec, data)
  assert scores["scored_images"] == scores["images"] == len(data)
  assert 0 <= scores["accuracy"] <= 1 and set(scores["per_class_accuracy"]) == set(rec.class_names)
  preds = rec.predict(to_float(data.image))
  assert scores["accuracy"] == pytest.approx(np.mean(preds == data.label))
  # A database whose label set differs: renamed classes are matched, unknown ones reported.
  names = list(data.class_names)
  names[0], names[1] = "angry", "boredom"  # 'angry' = 'anger'; nobody knows 'boredom'
  renamed = pipeline.ArrayDataset(data.image, data.label, data.subject, tuple(names))
  if rec.class_names[0] == "anger":
    s2 = evaluate_lib.evaluate(rec, renamed)
    assert s2["not_in_recogniser"] == {"boredom": int(np.sum(data.label == 1))}
    assert s2["scored_images"] == len(data) - int(np.sum(data.label == 1))
    assert rec.class_names[1] in s2["not_in_database"]
    keep = data.label != 1
    assert s2["accuracy"] == pytest.approx(np.mean(preds[keep] == data.label[keep]))


def test_export_equals_the_original_at_any_batch(run, tmp_path):
  _, workdir, test, _, _ = run
  rec = RestoredRecogniser.load(workdir)
  meta = export_lib.export_recogniser(rec, str(tmp_path / "exp"))
  assert meta["class_names"] == list(rec.class_names)
  assert os.path.isfile(tmp_path / "exp" / "serve.py")
  predict, loaded_meta = export_lib.load(str(tmp_path / "exp"))
  assert loaded_meta == meta
  for n in (1, 3, 5):
    x = to_float(test.image[:n])
    np.testing.assert_allclose(predict(x), rec.probabilities(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_synthesize_sheets_interpolations_and_errors(run, tmp_path):
  _, workdir, test, paths, _ = run
  gen = RestoredGenerator.load(workdir)
  assert gen.stage == "joint"
  x = to_float(predict_lib.load_faces(paths[:2], gen.crop))
  ids = synthesize.expression_ids(gen, "happiness,surprise")
  out, sheet = synthesize.translate_sheet(gen, x, ids)
  assert out.shape == (2, 2, 32, 32, 1) and sheet.ndim == 3 and sheet.shape[2] == 3
  # The sheet's cells are the generator's translations of those faces, nothing else.
  k = len(gen.class_names)
  direct = gen.decode(gen.encode(x[:1]), np.eye(k, dtype=np.float32)[ids[:1]])
  np.testing.assert_allclose(out[0, 0], direct[0], atol=1e-5)
  prior, _ = synthesize.prior_sheet(gen, 3, seed=0)
  assert prior.shape == (3, k, 32, 32, 1)
  strip = synthesize.interpolate(gen, x, "happiness,surprise", 5)
  np.testing.assert_allclose(strip[0], out[0, 0], atol=1e-5)  # starts at the first expression
  np.testing.assert_allclose(strip[-1], out[0, 1], atol=1e-5)  # ends at the second
  ident = synthesize.interpolate(gen, x, "identity", 4)
  assert ident.shape == (4, 32, 32, 1)
  gif = str(tmp_path / "a.gif")
  synthesize.write_gif(strip, gif)
  assert Image.open(gif).n_frames == 8
  with pytest.raises(ValueError, match=r"--expressions \['joy'\]"):
    synthesize.expression_ids(gen, "joy")
  with pytest.raises(ValueError, match="needs two --images"):
    synthesize.interpolate(gen, x[:1], "identity", 4)
  assert RestoredGenerator.load(workdir, "fesgan").stage == "fesgan"


@pytest.mark.slow
def test_cross_database_protocol_trains_on_one_and_tests_on_another(tiny_config, tmp_path):
  from jfesgan.research import crossval
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(tmp_path / "tfds")
  cfg.stages = ("real",)
  other = tiny_config.copy_and_resolve_references()
  other.data.data_dir = str(tmp_path / "tfds")
  other.data.data_seed = 5  # other faces: another "database"
  other.data.image_size = 48  # of another size: resized to the run's 32 px
  scores = crossval.run_cross_database(cfg, other, str(tmp_path / "cv"))
  assert 0.0 <= scores["eval/real/acc"] <= 1.0
  import json
  with open(tmp_path / "cv" / "cross_procedural_faces" / "summary.json") as f:
    summary = json.load(f)
  # Trained on all 8 identities of one database, tested on all 56 images of the other.
  assert int(np.sum(summary["confusion"]["real"])) == len(pipeline.load(other.data)) == 56


def test_onnx_export_serves_with_onnxruntime_and_numpy_alone(run, tmp_path):
  """`jfesgan export --format onnx`: the recogniser and the generator's two graphs, loaded by the
  written serve_onnx.py in a process where jax, flax and jfesgan cannot be imported, equal the
  restored networks to 1e-4 at several batch sizes."""
  pytest.importorskip("onnxruntime")
  _, workdir, test, _, _ = run
  out = str(tmp_path / "onnx")
  done = subprocess.run([sys.executable, "-m", "jfesgan.tools.export", "--workdir", workdir,
                         "--out", out, "--format", "onnx"], capture_output=True, text=True, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "generator_decode.onnx" in done.stdout
  rec, gen = RestoredRecogniser.load(workdir), RestoredGenerator.load(workdir)
  k = len(gen.class_names)
  x = to_float(test.image[:5])
  c = np.eye(k, dtype=np.float32)[np.arange(5) % k]
  c[2] = 0.5 * c[2] + 0.5 * c[3]
  z = np.random.default_rng(0).uniform(-1, 1, (5, gen.latent_dim)).astype(np.float32)
  np.savez(tmp_path / "in.npz", x=x, c=c, z=z)
  script = f"""
import sys
class NoJax:
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("jax", "jaxlib", "flax", "jfesgan", "optax"):
      raise ImportError("not for serving: " + name)
sys.meta_path.insert(0, NoJax())
sys.path.insert(0, {out!r})
import numpy as np
from serve_onnx import load, load_generator
predict, meta = load({out!r})
translate, decode = load_generator({out!r})
d = np.load({str(tmp_path / "in.npz")!r})
outs = {{}}
for n in (1, 2, 5):
  outs[f"p{{n}}"] = predict(d["x"][:n])
  outs[f"t{{n}}"] = translate(d["x"][:n], d["c"][:n])
  outs[f"d{{n}}"] = decode(d["z"][:n], d["c"][:n])
np.savez({str(tmp_path / "out.npz")!r}, **outs)
print(meta["class_names"])
"""
  served = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=str(tmp_path))
  assert served.returncode == 0, served.stderr[-2000:]
  got = np.load(tmp_path / "out.npz")
  for n in (1, 2, 5):
    np.testing.assert_allclose(got[f"p{n}"], rec.probabilities(x[:n]), atol=1e-4)
    np.testing.assert_allclose(got[f"t{n}"], gen.translate(x[:n], c[:n]), atol=1e-4)
    np.testing.assert_allclose(got[f"d{n}"], gen.decode(z[:n], c[:n]), atol=1e-4)
