"""Test setup: four fake CPU devices and XLA:CPU's LLVM level 0 (both set before JAX is imported),
and shared tiny fixtures."""

import os

# LLVM level 0 (XLA:CPU's default is 3): the suite is bound by compiling tiny programs, which level
# 0 compiles about twice as fast (stage 1's tiny step: 16.7 s -> 8.5 s; the whole suite 21.8 ->
# 14.3-16.8 min on 2 cores).  The arithmetic is IEEE either way; what changes is rounding (fused
# multiply-adds, the order of some sums), which no test asserts bit for bit (docs/testing.md).
# The product keeps XLA's default.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
_DEVICES_FLAG = "--xla_force_host_platform_device_count"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           f" {_DEVICES_FLAG}=4 {TEST_XLA_FLAGS}").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import atexit  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import pytest  # noqa: E402

from jfesgan.run import host  # noqa: E402

# One persistent XLA compilation cache for the whole session (the product's own, with its
# settings), shared by every test and by the subprocesses they start (fixture
# ``compilation_cache``: pass it as ``--compilation_cache``).  Most tests train the same tiny
# networks: compiled once, the rest of the suite loads them.  Cached executables are XLA's own
# output for the same program, so results are unchanged.  The folder is made once per session
# (processes that inherit the variable reuse it) and removed by the process that made it.
if "JFESGAN_TEST_XLA_CACHE" not in os.environ:
  os.environ["JFESGAN_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="jfesgan-test-xla-")
  atexit.register(shutil.rmtree, os.environ["JFESGAN_TEST_XLA_CACHE"], ignore_errors=True)
host.enable_compilation_cache(os.environ["JFESGAN_TEST_XLA_CACHE"])


@pytest.fixture(scope="session")
def compilation_cache():
  """The session's persistent XLA cache folder, for ``--compilation_cache`` of subprocesses."""
  return os.environ["JFESGAN_TEST_XLA_CACHE"]


@pytest.fixture(scope="session")
def subprocess_xla_flags():
  """``flags(devices)``: this session's ``XLA_FLAGS`` with ``devices`` fake CPU devices, for a
  subprocess whose results are compared with this process's (the same LLVM level on both sides)."""
  def flags(devices: int) -> str:
    kept = [f for f in os.environ["XLA_FLAGS"].split() if not f.startswith(_DEVICES_FLAG)]
    return " ".join([*kept, f"{_DEVICES_FLAG}={devices}"])
  return flags


@pytest.fixture(scope="session")
def tiny_config():
  """The tiny test configuration (a fresh copy per use is made by callers that mutate it)."""
  from configs import tiny
  return tiny.get_config()


@pytest.fixture(scope="session")
def tiny_run(tiny_config, tmp_path_factory):
  """One finished run of the tiny config (every stage, 4 devices), shared read-only by the tests
  of the tools and of multi-host training: (config, workdir)."""
  from jfesgan import train
  tmp = tmp_path_factory.mktemp("tiny_run")
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(tmp / "tfds")
  workdir = str(tmp / "run")
  train.train_and_evaluate(cfg, workdir)
  return cfg, workdir


def pytest_report_header(config):
  return f"jax {jax.__version__}, {jax.device_count()} devices: {jax.devices()[0].platform}"


# Fixtures that train a model or start a process: a test that uses one is slow, marked here so that
# no such test can be left out of the marker by hand.
SLOW_FIXTURES = {"tiny_run", "compilation_cache"}


def pytest_collection_modifyitems(config, items):
  """Marks every test that uses a fixture of ``SLOW_FIXTURES`` (directly or through another
  fixture) ``slow``; then runs the slow tests first (a stable sort: otherwise collection order).
  With several xdist workers (the README's ``-n auto``) the longest tests then start at once
  instead of last, which would leave one worker running them alone at the end."""
  del config
  for item in items:
    if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.slow)
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)
