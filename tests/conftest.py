"""Test setup: four fake CPU devices (set before JAX is imported) and shared tiny fixtures."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_config():
  """The tiny test configuration (a fresh copy per use is made by callers that mutate it)."""
  from configs import tiny
  return tiny.get_config()


def pytest_report_header(config):
  return f"jax {jax.__version__}, {jax.device_count()} devices: {jax.devices()[0].platform}"
