"""The benchmark times every step (beside PyTorch's when it is installed) and probes memory."""

import importlib.util

import pytest

from jfesgan import benchmark


def test_shapes_parse_and_bad_ones_are_named():
  assert benchmark.parse_shapes("48x1, 128x3") == [(48, 1), (128, 3)]
  assert benchmark.parse_shapes("config") == [None]
  with pytest.raises(ValueError, match=r"--shapes: '48' is not SIZExCHANNELS"):
    benchmark.parse_shapes("48")


def test_every_step_is_timed_with_ratios_when_torch_is_there(tiny_config):
  with_torch = importlib.util.find_spec("torch") is not None
  cfg = tiny_config.copy_and_resolve_references()
  names = ("phi", "fesgan_g")  # a plain step and a GAN update (all six take minutes here)
  rows = benchmark.shape_benchmarks(cfg, 2, with_torch, names=names)
  assert tuple(rows) == names
  for row in rows.values():
    assert row["jfesgan_s"] > 0 and row["jfesgan_compile_plus_first_s"] >= row["jfesgan_s"]
    if with_torch:
      assert row["ratio"] == pytest.approx(row["jfesgan_s"] / row["torch_s"], rel=0.01, abs=2e-3)
  report = {"torch": "x" if with_torch else None, "shapes": {"32x32x1": rows}}
  lines = benchmark.table(report).splitlines()
  assert len(lines) == 2 + len(rows) and lines[2].startswith("| 32x32x1 | phi |")


def test_memory_probe_runs_in_a_fresh_process():
  mem = benchmark._memory_probe(["--config", "configs/tiny.py"], "jax", "phi", (32, 1))  # pylint: disable=protected-access
  assert 100 < mem["before_mb"] <= mem["first_call_peak_mb"] <= mem["peak_mb"]
  assert mem["step_peak_mb"] <= mem["peak_mb"]
