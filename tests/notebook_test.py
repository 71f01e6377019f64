"""The Colab notebook, executed headless on CPU with the tiny config, so that it cannot rot."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_colab_notebook_runs_on_cpu(tmp_path, monkeypatch, compilation_cache):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  monkeypatch.setenv("JFESGAN_REPO", ROOT)
  monkeypatch.setenv("JFESGAN_CONFIG", "configs/tiny.py")
  monkeypatch.setenv("JFESGAN_FLAGS", f"--config.data.data_dir={tmp_path / 'tfds'} "
                     f"--compilation_cache={compilation_cache}")
  monkeypatch.setenv("JFESGAN_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("JFESGAN_SKIP_INSTALL", "1")  # CI installed it as the README says
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  # XLA_FLAGS stays conftest's (4 fake devices, like a TPU host's several chips): the notebook's
  # run compiles what the shared tiny run compiled, so its steps come from the session's cache.
  nb = nbformat.read(os.path.join(ROOT, "launch", "colab_tpu.ipynb"), as_version=4)
  nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert "backend extra: cpu" in outputs
  assert "jfesgan run finished." in outputs
  assert "report.html" in outputs and "images/s" in outputs
  images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
  assert images, "the sample grid was not displayed"
  assert os.path.isfile(tmp_path / "run" / "report.html")
