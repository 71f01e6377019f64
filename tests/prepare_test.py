"""Datasets prepared once when several processes ask for them at the same moment."""

import os
import subprocess
import sys
import threading
import time

import pytest

from jfesgan.data import prepare


class _FakeBuilder:
  """TFDS's way of preparing: generate into a temporary folder, then rename it into place
  (which fails when another process got there first); a builder made before the data existed
  does not see it afterwards."""

  generated = 0

  def __init__(self, root):
    self.data_dir = os.path.join(root, "faces", "config", "1.0.0")
    self.saw_data = os.path.isdir(self.data_dir)

  def download_and_prepare(self):
    if os.path.isdir(self.data_dir):
      return
    tmp = f"{self.data_dir}.incomplete{threading.get_ident()}"
    os.makedirs(tmp)
    with open(os.path.join(tmp, "records"), "w") as f:
      f.write("generated")
    time.sleep(0.3)  # generating
    type(self).generated += 1
    os.rename(tmp, self.data_dir)  # OSError when the folder is there already


def _race(root, prepare_fn):
  errors, builders = [], []

  def one():
    try:
      builders.append(prepare_fn())
    except OSError as e:
      errors.append(e)

  threads = [threading.Thread(target=one) for _ in range(3)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  return builders, errors


def test_processes_asking_at_once_take_turns_and_read_what_the_first_wrote(tmp_path):
  _FakeBuilder.generated = 0
  builders, errors = _race(tmp_path, lambda: prepare.prepared(lambda: _FakeBuilder(tmp_path)))
  assert not errors and len(builders) == 3
  assert _FakeBuilder.generated == 1
  # The two that waited hold builders made after the data was there.
  assert sorted(b.saw_data for b in builders) == [False, True, True]
  # Asked again, nothing is generated.
  assert prepare.prepared(lambda: _FakeBuilder(tmp_path)).saw_data
  assert _FakeBuilder.generated == 1


def test_without_the_lock_the_race_fails(tmp_path):
  """The fake reproduces the failure that prepared() prevents (so the test above can fail)."""
  _FakeBuilder.generated = 0

  def unlocked():
    b = _FakeBuilder(tmp_path)
    b.download_and_prepare()
    return b

  _, errors = _race(tmp_path, unlocked)
  assert errors


@pytest.mark.slow
def test_two_processes_prepare_the_procedural_faces_side_by_side(tmp_path):
  code = ("import sys; from jfesgan.data import procedural, procedural_tfds; "
          "b = procedural_tfds.builder(procedural.FaceSpec(image_size=16, num_identities=2, "
          "frames=1), data_dir=sys.argv[1]); print(b.info.splits['train'].num_examples)")
  procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
    assert out.split()[-1] == "14"  # 2 identities x 7 expressions x 1 frame
