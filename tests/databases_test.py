"""The real-database builders, each prepared from a small fake tree in the database's own layout.

The trees are made here from procedural faces (never real ones) pasted into larger frames, so the
Haar detector has a face to find where the database ships whole frames.
"""

import csv
import importlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from jfesgan.data import faces, pipeline, procedural
from jfesgan.data.databases import base

FRAME_HW = (160, 200)


@pytest.fixture(scope="module")
def bank():
  """Procedural faces (96 px RGB) that the Haar detector finds wherever they are pasted."""
  spec = procedural.FaceSpec(image_size=96, channels=3, num_identities=12)
  pose = procedural.sample_pose(np.random.default_rng(0), 12)
  with np.errstate(all="ignore"):
    imgs = (procedural.render_truth(spec, np.arange(12), np.arange(12) % 6, pose) * 255).astype(np.uint8)
  det = faces.HaarDetector()
  found = [im for im in imgs if det(frame_with(im, 0)) and det(frame_with(im, 1))]
  assert len(found) >= 6, "the Haar detector should find most procedural faces"
  return found


def frame_with(face: np.ndarray | None, where: int = 0, shade: int = 0) -> np.ndarray:
  """A gray frame with ``face`` pasted at one of two places (None: no face)."""
  frame = np.full((*FRAME_HW, 3), 90 + shade, np.uint8)
  if face is not None:
    y, x = [(30, 60), (50, 10)][where]
    frame[y:y + 96, x:x + 96] = face
  return frame


def save(img: np.ndarray, path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(img).save(path)
  return path


def corrupt(path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n not really an image")
  return path


def build(name: str, manual_dir, tmp_path, **data):
  """Every split of database ``name`` (its config, ``data`` overrides) prepared from
  ``manual_dir`` into a fresh data_dir."""
  cfg = importlib.import_module(f"configs.{name}").get_config()
  cfg.data.update(dict(manual_dir=str(manual_dir), data_dir=str(tmp_path / "tfds"), **data))
  return pipeline.load_splits(cfg.data)


def metadata(tmp_path, name: str) -> dict:
  [path] = [os.path.join(d, "metadata.json") for d, _, files in os.walk(tmp_path / "tfds" / name)
            if "metadata.json" in files and "dataset_info.json" in files]
  with open(path) as f:
    return json.load(f)


# ---------------------------------------------------------------------------------------------
# Cropping


def test_crops_are_centred_and_scaled_consistently(bank):
  cropper = faces.FaceCropper(faces.CropSpec(48, 3, "haar", 0.1))
  origins = [(60, 30), (10, 50)]  # (x, y) of the pasted face in frame_with(face, 0 / 1)
  crops = []
  for face in bank[:4]:
    boxes = [cropper.box(frame_with(face, w), "f.png") for w in (0, 1)]
    # The box sits on the face the same way wherever the face is, at the same scale.
    centres = [(b.x + b.w / 2 - ox, b.y + b.h / 2 - oy) for b, (ox, oy) in zip(boxes, origins)]
    assert np.abs(np.subtract(*centres)).max() <= 4, centres
    assert 0.3 * 96 < boxes[0].w < 96 * 1.1 and abs(boxes[0].w - boxes[1].w) <= 0.1 * boxes[0].w
    crops.append([cropper(frame_with(face, w), "f.png").astype(np.float32) for w in (0, 1)])
    assert crops[-1][0].shape == (48, 48, 3)
    # The crop is the face: its centre pixel is skin, not the gray background.
    assert not np.allclose(crops[-1][0][24, 24], 90, atol=3)
  # Crops of one face found at two places are closer than crops of two faces at one place.
  same = max(np.abs(a - b).mean() for a, b in crops)
  other = min(np.abs(crops[i][0] - crops[j][0]).mean() for i in range(4) for j in range(i))
  assert same < other, (same, other)


def test_crop_geometry_and_padding():
  cropper = faces.FaceCropper(faces.CropSpec(8, 1, "none", 0.0))
  img = np.zeros((10, 20, 3), np.uint8)
  img[:, 5:15] = 255  # the centred 10x10 square is white
  out = cropper(img, "x.png")
  assert out.shape == (8, 8, 1) and (out == 255).all()
  # An injected detector finds a 4x4 box at the corner; with the margin the 8x8 crop covers
  # columns -2..5, padded with border pixels on the left, and reaches the white column 5.
  corner = faces.FaceCropper(faces.CropSpec(8, 1, "haar", 0.5),
                             detector=lambda rgb: faces.Box(0, 0, 4, 4))
  out = corner(img, "x.png")[..., 0]
  assert out.shape == (8, 8) and (out[:, :7] == 0).all() and (out[:, 7] == 255).all()
  blind = faces.FaceCropper(faces.CropSpec(8, 1, "haar", 0.5), detector=lambda rgb: None)
  with pytest.raises(faces.BadInputError, match="x.png: no face found"):
    blind(img, "x.png")


def _dark_centroids(img: np.ndarray, thresh: int = 60) -> list[tuple[float, float]]:
  """(x, y) centroids of the dark pixels in the left and right halves of a gray crop."""
  g = img[..., 0].astype(np.float64)
  out = []
  for half in (slice(0, g.shape[1] // 2), slice(g.shape[1] // 2, g.shape[1])):
    ys, xs = np.nonzero(g[:, half] < thresh)
    out.append((float(xs.mean() + half.start), float(ys.mean())))
  return out


@pytest.mark.parametrize("angle", [0.0, 20.0, -35.0])
def test_aligned_crops_put_the_eyes_level_at_fixed_places(angle):
  """A face (two dark eyes on a light disc) turned by ``angle`` and placed anywhere: the aligned
  crop has its eyes level, EYE_DISTANCE of the face box apart, their midpoint centred at
  EYE_HEIGHT of the box (margin around it), whatever the turn, place and scale."""
  n, m = 48, 0.1
  img = np.full((200, 260, 3), 200, np.uint8)
  centre, d = np.array([150.0, 90.0]), 40.0  # eyes' midpoint and distance in the frame
  t = np.radians(angle)
  axis = np.array([np.cos(t), np.sin(t)])
  eyes = (tuple(centre - axis * d / 2), tuple(centre + axis * d / 2))
  yy, xx = np.mgrid[:200, :260]
  for ex, ey in eyes:
    img[(xx - ex) ** 2 + (yy - ey) ** 2 <= 25] = 0
  cropper = faces.FaceCropper(faces.CropSpec(n, 1, "haar", m, align=True),
                              detector=lambda rgb: faces.Box(120, 60, 100, 100),
                              eyes=lambda rgb, box: eyes)
  box = cropper.box(img, "f.png")
  assert box.eyes == eyes and cropper.unaligned == 0
  (lx, ly), (rx, ry) = _dark_centroids(cropper.crop(img, box))
  face = n / (1 + 2 * m)
  assert abs(ly - ry) < 0.6, (ly, ry)  # level
  np.testing.assert_allclose(rx - lx, faces.EYE_DISTANCE * face, atol=0.8)
  np.testing.assert_allclose([(lx + rx) / 2, (ly + ry) / 2],
                             [n / 2 - 0.5, m * face + faces.EYE_HEIGHT * face - 0.5], atol=0.8)
  # Eyes not found: the unaligned crop, counted.
  blind = faces.FaceCropper(faces.CropSpec(n, 1, "haar", m, align=True),
                            detector=lambda rgb: faces.Box(120, 60, 100, 100),
                            eyes=lambda rgb, box: None)
  plain = faces.FaceCropper(faces.CropSpec(n, 1, "haar", m),
                            detector=lambda rgb: faces.Box(120, 60, 100, 100))
  np.testing.assert_array_equal(blind(img, "f.png"), plain(img, "f.png"))
  assert blind.unaligned == 1 and plain.unaligned == 0
  assert faces.CropSpec(n, 1, "haar", m, align=True).tag == "48px_g_haar_m10_eyes"
  # data.align reaches the builders' crop (a dataset of its own) and the tools' crop of a run.
  from jfesgan.data import databases
  from jfesgan.evaluation.restored import crop_spec
  cfg = importlib.import_module("configs.ckplus").get_config()
  assert not databases.config_from(cfg.data).crop.align
  cfg.data.align = True
  assert databases.config_from(cfg.data).crop.tag.endswith("_eyes") and crop_spec(cfg.data).align


def test_opencv_eye_alignment_undoes_a_turn_of_the_head(bank):
  """OpenCV's eye cascade (shipped in its wheel) on procedural faces turned by 15 degrees: aligned,
  the turned and the upright face are cut alike, closer on average than their unaligned crops
  (the cascade's eye boxes move by a pixel or two, so single faces vary)."""
  from PIL import Image as PILImage
  aligned = faces.FaceCropper(faces.CropSpec(48, 1, "haar", 0.1, align=True))
  plain = faces.FaceCropper(faces.CropSpec(48, 1, "haar", 0.1))
  diffs = []
  for face in bank:
    upright = frame_with(face, 0)
    turned = np.asarray(PILImage.fromarray(upright).rotate(15, resample=PILImage.BILINEAR,
                                                           fillcolor=(90, 90, 90)))
    try:
      boxes = [aligned.box(f, "f.png") for f in (upright, turned)]
    except faces.BadInputError:
      continue
    if any(b.eyes is None for b in boxes):
      continue
    a = [aligned.crop(f, b).astype(np.float32) for f, b in zip((upright, turned), boxes)]
    p = [plain(f, "f.png").astype(np.float32) for f in (upright, turned)]
    diffs.append((np.abs(a[0] - a[1]).mean(), np.abs(p[0] - p[1]).mean()))
  assert len(diffs) >= 2, "the eye cascade should find both eyes of some procedural faces"
  mean_aligned, mean_plain = np.mean(diffs, axis=0)
  assert mean_aligned < 0.85 * mean_plain, diffs


def test_no_face_and_unreadable_image_name_the_file(tmp_path):
  cropper = faces.FaceCropper(faces.CropSpec(48, 1, "haar", 0.1))
  with pytest.raises(faces.BadInputError, match="blank.png: no face found"):
    cropper(frame_with(None), "blank.png")
  path = corrupt(str(tmp_path / "bad.png"))
  with pytest.raises(faces.BadInputError, match="bad.png: unreadable or corrupt image"):
    faces.load_image(path)


def test_subject_ids():
  assert base.subject_ids(["S010", "S005", "S132"]) == {"S005": 5, "S010": 10, "S132": 132}
  assert base.subject_ids(["KA", "YM", "KL"]) == {"KA": 0, "KL": 1, "YM": 2}


# ---------------------------------------------------------------------------------------------
# CK+


def ckplus_tree(root, bank, *, corrupt_last: bool = False, bad_label: bool = False,
                empty_sequence: bool = False, faceless: bool = False):
  """3 subjects; labelled sequences (subject, seq, code, face), one unlabelled sequence."""
  seqs = [("S005", "001", 3, 0), ("S005", "002", 5, 1), ("S010", "001", 7, 2),
          ("S132", "004", 1, 3), ("S132", "005", 2, 4)]
  for subj, seq, code, face in seqs + [("S010", "002", None, 5)]:
    for i in range(1, 6):  # 5 frames: first neutral-ish, last the apex
      save(frame_with(bank[face], face % 2, shade=i),
           f"{root}/cohn-kanade-images/{subj}/{seq}/{subj}_{seq}_{i:08d}.png")
    if code is not None:
      os.makedirs(f"{root}/Emotion/{subj}/{seq}", exist_ok=True)
      with open(f"{root}/Emotion/{subj}/{seq}/{subj}_{seq}_00000005_emotion.txt", "w") as f:
        f.write(f"   {code:.7e}\n")
  if corrupt_last:
    corrupt(f"{root}/cohn-kanade-images/S010/001/S010_001_00000005.png")
  if bad_label:
    with open(f"{root}/Emotion/S132/004/S132_004_00000005_emotion.txt", "w") as f:
      f.write("anger\n")
  if empty_sequence:
    for name in os.listdir(f"{root}/cohn-kanade-images/S132/005"):
      os.remove(f"{root}/cohn-kanade-images/S132/005/{name}")
  if faceless:
    save(frame_with(None), f"{root}/cohn-kanade-images/S005/002/S005_002_00000005.png")
  return seqs


def test_ckplus_counts_labels_subjects_and_crops(tmp_path, bank):
  seqs = ckplus_tree(tmp_path / "ck", bank)
  data = build("ckplus", tmp_path / "ck", tmp_path)["train"]
  assert data.class_names == ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
  assert len(data) == 3 * len(seqs)  # the last 3 frames of each labelled sequence only
  assert data.image.shape[1:] == (48, 48, 1)
  got = sorted(zip(data.subject.tolist(), data.label.tolist()))
  want = sorted((int(s[1:]), code - 1) for s, _, code, _ in seqs for _ in range(3))
  assert got == want
  sources = {s.decode() for s in data.extras["source"]}
  assert "cohn-kanade-images/S005/001/S005_001_00000005.png#2" in sources
  assert not any("S010/002" in s for s in sources)  # unlabelled
  # Frames of a sequence share one crop box: the same face, crops nearly identical.
  rows = [i for i, s in enumerate(data.extras["source"]) if b"S005/001" in s]
  assert np.abs(data.image[rows[0]].astype(int) - data.image[rows[2]]).mean() < 8


def test_ckplus_neutral_first_frame(tmp_path, bank):
  seqs = ckplus_tree(tmp_path / "ck", bank)
  data = build("ckplus", tmp_path / "ck", tmp_path, include_neutral=True)["train"]
  assert data.class_names[0] == "neutral" and len(data.class_names) == 8
  assert len(data) == 4 * len(seqs)
  assert (data.label == 0).sum() == len(seqs)
  assert sorted(data.label[data.label > 0].tolist()) == sorted(c for *_, c, _ in seqs for _ in range(3))


@pytest.mark.parametrize("case, match", [
    ("corrupt_last", "S010_001_00000005.png: unreadable or corrupt image"),
    ("bad_label", "S132_004_00000005_emotion.txt: label file does not parse"),
    ("empty_sequence", "cohn-kanade-images/S132/005: labelled sequence without frames"),
    ("faceless", "S005_002_00000005.png: no face found"),
])
def test_ckplus_bad_input_is_named_or_skipped_and_listed(tmp_path, bank, case, match):
  seqs = ckplus_tree(tmp_path / "ck", bank, **{case: True})
  with pytest.raises(faces.BadInputError, match=match):
    build("ckplus", tmp_path / "ck", tmp_path)
  data = build("ckplus", tmp_path / "ck", tmp_path / "skip", skip_bad_input=True)["train"]
  assert len(data) == 3 * (len(seqs) - 1)  # the bad sequence only
  skipped = metadata(tmp_path / "skip", "ckplus")["skipped"]
  assert len(skipped) == 1 and match.split(":")[0] in skipped[0]["path"] + ":"


def test_missing_or_empty_manual_folder_gives_the_instructions(tmp_path):
  with pytest.raises(faces.BadInputError,
                     match="(?s)nowhere: missing folder: the manual folder of ckplus.*cohn-kanade"):
    build("ckplus", tmp_path / "nowhere", tmp_path)
  os.makedirs(tmp_path / "empty")
  with pytest.raises(AssertionError, match="(?s)does not exist or is empty.*Emotion"):
    build("ckplus", tmp_path / "empty", tmp_path)
  os.makedirs(tmp_path / "wrong" / "something")
  with pytest.raises(faces.BadInputError, match="cohn-kanade-images: missing folder"):
    build("ckplus", tmp_path / "wrong", tmp_path)


# ---------------------------------------------------------------------------------------------
# Oulu-CASIA


def oulu_tree(root, bank, modality="VL", light="Strong"):
  classes = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
  for p, person in enumerate(("P001", "P007")):
    for c, cls in enumerate(classes):
      for i in range(5):
        save(frame_with(bank[(p + c) % len(bank)], p, shade=i),
             f"{root}/OriginalImg/{modality}/{light}/{person}/{cls}/{i:03d}.jpeg")
  return classes


def test_oulu_casia_configs_counts_and_unknown_class(tmp_path, bank):
  oulu_tree(tmp_path / "oulu", bank)
  oulu_tree(tmp_path / "oulu", bank, "NI", "Dark")
  data = build("oulu_casia", tmp_path / "oulu", tmp_path)["train"]
  assert len(data) == 2 * 6 * 3
  assert sorted(set(data.subject.tolist())) == [1, 7]
  np.testing.assert_array_equal(np.bincount(data.label), [6] * 6)
  assert all(s.startswith(b"OriginalImg/VL/Strong/") for s in data.extras["source"])
  nir = build("oulu_casia", tmp_path / "oulu", tmp_path, modality="nir", light="dark")["train"]
  assert len(nir) == 36 and all(b"/NI/Dark/" in s for s in nir.extras["source"])
  save(frame_with(bank[0]), f"{tmp_path}/oulu/OriginalImg/VL/Strong/P001/Contempt/000.jpeg")
  with pytest.raises(faces.BadInputError, match="P001/Contempt: unknown class folder"):
    build("oulu_casia", tmp_path / "oulu", tmp_path / "again")


# ---------------------------------------------------------------------------------------------
# MMI


def write_video(path: str, frames: list[np.ndarray]) -> None:
  import cv2
  os.makedirs(os.path.dirname(path), exist_ok=True)
  h, w = frames[0].shape[:2]
  out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
  for f in frames:
    out.write(f[..., ::-1])
  out.release()


def session_xml(path, emotion, subject):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tag = "" if emotion is None else f'<Metatag Name="Emotion" Value="{emotion}"/>'
  with open(path, "w") as f:
    f.write(f'<?xml version="1.0"?><session sessionId="1"><subject id="{subject}"/>{tag}</session>')


def test_mmi_sessions_from_videos_and_frames(tmp_path, bank):
  root = tmp_path / "mmi"
  # Session 100: a video (7 frames; the middle 3 are kept); 101: frames; 102: no emotion (AU only).
  write_video(f"{root}/Sessions/100/S001-100.avi", [frame_with(bank[0], 0, i) for i in range(7)])
  session_xml(f"{root}/Sessions/100/session.xml", 4, 1)
  for i in range(5):
    save(frame_with(bank[1], 1, i), f"{root}/Sessions/101/S002-101_{i:03d}.png")
  session_xml(f"{root}/Sessions/101/session.xml", 6, 2)
  write_video(f"{root}/Sessions/102/S001-102.avi", [frame_with(bank[0])] * 3)
  session_xml(f"{root}/Sessions/102/session.xml", None, 1)
  data = build("mmi", root, tmp_path)["train"]
  assert len(data) == 6
  assert sorted(zip(data.subject.tolist(), data.label.tolist())) == [(1, 3)] * 3 + [(2, 5)] * 3
  assert {s.decode().split("#")[0] for s in data.extras["source"]} == {
      "Sessions/100/S001-100.avi", "Sessions/101"}
  with open(f"{root}/Sessions/101/session.xml", "w") as f:
    f.write("<session><subject")
  with pytest.raises(faces.BadInputError, match="101/session.xml: session.xml does not parse"):
    build("mmi", root, tmp_path / "again")


# ---------------------------------------------------------------------------------------------
# JAFFE


def test_jaffe_names_subjects_and_bad_names(tmp_path, bank):
  root = tmp_path / "jaffe" / "jaffe"
  names = ["KA.AN1.39", "KA.NE1.26", "KL.HA2.159", "YM.SU3.60", "YM.DI1.64"]
  for i, n in enumerate(names):
    save(frame_with(bank[i]), f"{root}/{n}.tiff")
  with open(f"{root}/README", "w") as f:
    f.write("not an image, not data")  # non-image files are not read
  data = build("jaffe", tmp_path / "jaffe", tmp_path, frames=1, include_neutral=True)["train"]
  cls = data.class_names
  got = sorted((s, cls[y]) for s, y in zip(data.subject.tolist(), data.label.tolist()))
  assert got == [(0, "anger"), (0, "neutral"), (1, "happiness"), (2, "disgust"), (2, "surprise")]
  six = build("jaffe", tmp_path / "jaffe", tmp_path / "six", include_neutral=False)["train"]
  assert len(six) == 4 and "neutral" not in six.class_names
  save(frame_with(bank[0]), f"{root}/KA.XX1.40.tiff")
  with pytest.raises(faces.BadInputError, match="KA.XX1.40.tiff: file name is not JAFFE's"):
    build("jaffe", tmp_path / "jaffe", tmp_path / "bad", frames=1)


# ---------------------------------------------------------------------------------------------
# FER2013 and RAF-DB (official splits, no subject ids)


def test_fer2013_csv_official_splits(tmp_path):
  root = tmp_path / "fer"
  os.makedirs(root)
  rng = np.random.default_rng(0)
  rows = [(i % 7, rng.integers(0, 256, 2304), u) for i, u in
          enumerate(["Training"] * 5 + ["PublicTest"] * 2 + ["PrivateTest"] * 3)]
  with open(root / "fer2013.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["emotion", "pixels", "Usage"])
    for y, px, u in rows:
      w.writerow([y, " ".join(map(str, px)), u])
  parts = build("fer2013", root, tmp_path, detector="none", margin=0.0, frames=1)
  assert {k: len(v) for k, v in parts.items()} == {"train": 5, "validation": 2, "test": 3}
  assert (parts["train"].subject == -1).all()
  # Sources are "fer2013.csv:<line>#0"; rows 2.. of the file.
  order = np.argsort([int(s.split(b":")[1].split(b"#")[0]) for s in parts["train"].extras["source"]])
  np.testing.assert_array_equal(parts["train"].label[order], [0, 1, 2, 3, 4])
  np.testing.assert_array_equal(parts["train"].image[order][0, ..., 0].reshape(-1), rows[0][1])
  with open(root / "fer2013.csv", "a") as f:
    f.write("9,1 2 3,Training\n")
  with pytest.raises(faces.BadInputError, match=r"fer2013.csv:12: row does not parse"):
    build("fer2013", root, tmp_path / "bad", detector="none", margin=0.0, frames=1)


def test_fer2013_image_folders(tmp_path):
  root = tmp_path / "fer"
  for split, n in (("train", 2), ("test", 1)):
    for cls in ("angry", "happy", "neutral"):
      for i in range(n):
        save(np.full((48, 48), 40 * i, np.uint8), f"{root}/{split}/{cls}/im{i}.jpg")
  parts = build("fer2013", root, tmp_path, detector="none", margin=0.0, frames=1)
  assert sorted(parts) == ["test", "train"] and len(parts["train"]) == 6 and len(parts["test"]) == 3
  names = parts["train"].class_names
  assert sorted(names[y] for y in parts["test"].label) == ["angry", "happy", "neutral"]
  save(np.zeros((48, 48), np.uint8), f"{root}/train/angery/im0.jpg")
  with pytest.raises(faces.BadInputError, match="train/angery: unknown class folder"):
    build("fer2013", root, tmp_path / "bad", detector="none", margin=0.0, frames=1)


def test_rafdb_lists_and_official_splits(tmp_path):
  root = tmp_path / "raf"
  lines = ["train_00001.jpg 5", "train_00002.jpg 1", "test_0001.jpg 7"]
  os.makedirs(root / "basic" / "EmoLabel")
  with open(root / "basic" / "EmoLabel" / "list_patition_label.txt", "w") as f:
    f.write("\n".join(lines) + "\n")
  for line in lines:
    stem = line.split(".")[0]
    save(np.full((100, 100, 3), 128, np.uint8), f"{root}/basic/Image/aligned/{stem}_aligned.jpg")
  parts = build("rafdb", root, tmp_path, detector="none", margin=0.0, frames=1)
  names = parts["train"].class_names
  assert sorted(names[y] for y in parts["train"].label) == ["sadness", "surprise"]
  assert [names[y] for y in parts["test"].label] == ["neutral"]
  assert parts["test"].image.shape == (1, 48, 48, 1)
  os.remove(f"{root}/basic/Image/aligned/train_00002_aligned.jpg")
  with pytest.raises(faces.BadInputError, match="train_00002_aligned.jpg: unreadable"):
    build("rafdb", root, tmp_path / "bad", detector="none", margin=0.0, frames=1)


# ---------------------------------------------------------------------------------------------
# Any class-per-folder tree (CK+48)


def ck48_tree(root):
  rng = np.random.default_rng(0)
  files = {"anger": ["S010_004_00000017", "S010_004_00000018", "S011_004_00000019"],
           "happy": ["S010_006_00000015", "S022_001_00000030"], "contempt": ["S138_008_00000010"]}
  for cls, stems in files.items():
    for stem in stems:
      save(rng.integers(0, 256, (48, 48), dtype=np.uint8), f"{root}/{cls}/{stem}.png")
  return files


def test_expression_folder_ckplus48_layout(tmp_path):
  from configs import expression_folder
  ck48_tree(tmp_path / "CK+48")
  cfg = expression_folder.get_config(str(tmp_path / "CK+48"))
  cfg.data.data_dir = str(tmp_path / "tfds")
  data = pipeline.load(cfg.data)
  names = data.class_names
  got = sorted((s, names[y]) for s, y in zip(data.subject.tolist(), data.label.tolist()))
  assert got == [(10, "anger"), (10, "anger"), (10, "happy"), (11, "anger"), (22, "happy"),
                 (138, "contempt")]
  # Pre-cropped 48 px gray images are stored as they are.
  src = [s.decode() for s in data.extras["source"]].index("anger/S011_004_00000019.png#0")
  np.testing.assert_array_equal(
      data.image[src, ..., 0], np.asarray(Image.open(tmp_path / "CK+48/anger/S011_004_00000019.png")))


def test_prepared_dataset_is_never_stale(tmp_path):
  """The prepared copy is keyed by the source tree's contents: an edited or added image is seen
  (even one replaced by another of the same size with its modification time put back), and a
  missing tree is an error even though a prepared copy exists."""
  from configs import expression_folder
  root = tmp_path / "CK+48"
  ck48_tree(root)
  cfg = expression_folder.get_config(str(root))
  cfg.data.data_dir = str(tmp_path / "tfds")
  first = pipeline.load(cfg.data)
  edited = f"{root}/anger/S011_004_00000019.png"
  new_pixels = np.full((48, 48), 200, np.uint8)
  save(new_pixels, edited)
  os.utime(edited, ns=(1, 1))  # a different modification time, whatever the clock's resolution
  second = pipeline.load(cfg.data)
  src = [s.decode() for s in second.extras["source"]].index("anger/S011_004_00000019.png#0")
  np.testing.assert_array_equal(second.image[src, ..., 0], new_pixels)
  assert not np.array_equal(first.image[src], second.image[src])
  # Replaced by another image of the same size, with its modification time restored: the content
  # is what counts.
  stat = os.stat(edited)
  other_pixels = np.full((48, 48), 17, np.uint8)
  save(other_pixels, edited)
  assert os.stat(edited).st_size == stat.st_size
  os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  third = pipeline.load(cfg.data)
  np.testing.assert_array_equal(third.image[src, ..., 0], other_pixels)
  save(np.zeros((48, 48), np.uint8), f"{root}/happy/S030_001_00000001.png")
  assert len(pipeline.load(cfg.data)) == len(first) + 1
  os.rename(root, tmp_path / "moved")
  with pytest.raises(faces.BadInputError, match="CK\\+48: missing folder"):
    pipeline.load(cfg.data)


@pytest.mark.parametrize("make, match", [
    (lambda r: save(np.zeros((48, 48), np.uint8), f"{r}/angry/S001_001_00000001.png"),
     "angry: unknown class folder"),
    (lambda r: open(f"{r}/happy/notes.txt", "w").close(), "notes.txt: not an image file"),
    (lambda r: save(np.zeros((48, 48), np.uint8), f"{r}/happy/subject7.png"),
     "subject7.png: the subject regex does not match"),
    (lambda r: corrupt(f"{r}/happy/S050_001_00000001.png"),
     "S050_001_00000001.png: unreadable or corrupt image"),
    (lambda r: os.makedirs(f"{r}/fear"), "fear: empty class folder"),
    (lambda r: save(np.zeros((1, 1), np.uint8), f"{r}/happy/S051_001_00000001.png"),
     "S051_001_00000001.png: image of 1x1 px"),
    (lambda r: save(np.zeros((4000, 4000), np.uint8), f"{r}/happy/S052_001_00000001.png"),
     "S052_001_00000001.png: image of 4000x4000 px"),
    # A file that is a symlink loop: every OSError met reading a database is bad input.
    (lambda r: os.symlink(f"{r}/happy/S053_001_00000001.png", f"{r}/happy/S053_001_00000001.png"),
     "S053_001_00000001.png: unreadable or corrupt image"),
])
def test_expression_folder_bad_input(tmp_path, make, match):
  from configs import expression_folder
  files = ck48_tree(tmp_path / "CK+48")
  make(tmp_path / "CK+48")
  cfg = expression_folder.get_config(str(tmp_path / "CK+48"))
  cfg.data.data_dir = str(tmp_path / "tfds")
  with pytest.raises(faces.BadInputError, match=match):
    pipeline.load(cfg.data)
  cfg.data.skip_bad_input = True
  assert len(pipeline.load(cfg.data)) == sum(map(len, files.values()))
  [skipped] = metadata(tmp_path, "expression_folder")["skipped"]
  assert match.split(":")[0] in skipped["path"]


def test_official_protocol_and_missing_subjects_are_checked(tmp_path):
  from configs import fer2013
  root = tmp_path / "fer"
  for split in ("train", "test"):
    save(np.zeros((48, 48), np.uint8), f"{root}/{split}/happy/a.jpg")
  cfg = fer2013.get_config()
  cfg.data.manual_dir, cfg.data.data_dir = str(root), str(tmp_path / "tfds")
  train, test = pipeline.train_test(cfg.data)
  assert len(train) == len(test) == 1
  cfg.data.test_split = "validation"
  with pytest.raises(ValueError, match="data.test_split: fer2013 has splits .* not 'validation'"):
    pipeline.train_test(cfg.data)
  cfg.data.protocol = "folds"
  with pytest.raises(ValueError, match="need subject ids"):
    pipeline.train_test(cfg.data)


def test_databases_without_subjects_refuse_the_identity_network(tmp_path, tiny_config):
  """FER2013 has no subject ids: its config switches Phi and the identity term off, and turning
  the identity term back on is refused before anything trains."""
  from configs import fer2013
  from jfesgan import train
  for split in ("train", "test"):
    save(np.zeros((48, 48), np.uint8), f"{tmp_path}/fer/{split}/happy/a.jpg")
  cfg = fer2013.get_config()
  assert cfg.phi.steps == 0 and cfg.fesgan.identity_weight == 0
  cfg.data.manual_dir, cfg.data.data_dir = str(tmp_path / "fer"), str(tmp_path / "tfds")
  cfg.fesgan.identity_weight = 1.0
  with pytest.raises(ValueError, match="no subject ids.*fesgan.identity_weight"):
    train.train_and_evaluate(cfg, str(tmp_path / "run"))
