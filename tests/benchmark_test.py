"""The benchmark times every step (beside PyTorch's when it is installed) and probes memory."""

import importlib.util

import jax
import jax.numpy as jnp
import pytest

from jfesgan import stages
from jfesgan.bench import benchmark


def test_shapes_parse_and_bad_ones_are_named():
  assert benchmark.parse_shapes("48x1, 128x3") == [(48, 1), (128, 3)]
  assert benchmark.parse_shapes("config") == [None]
  with pytest.raises(ValueError, match=r"--shapes: '48' is not SIZExCHANNELS"):
    benchmark.parse_shapes("48")


def test_only_names_steps_and_refuses_unknown_ones():
  assert benchmark.parse_only([]) == benchmark.STEP_NAMES
  assert benchmark.parse_only(["fesgan", "joint"]) == ("fesgan", "joint")
  with pytest.raises(ValueError, match=r"--only: unknown steps \['stage1'\]"):
    benchmark.parse_only(["fesgan", "stage1"])


def test_flops_are_xla_counts_of_the_program_and_mfu_uses_the_chip_peak():
  a, b = jnp.ones((8, 32)), jnp.ones((32, 16))
  assert benchmark.program_flops(lambda x, y: x @ y, a, b) == 2 * 8 * 32 * 16
  # A 'SAME' 3x3 convolution of a 4x4 image: taps on the zero border are not counted (4 corners
  # x 4 taps + 8 edge pixels x 6 + 4 inner x 9 = 100 multiply-adds) ...
  x, k = jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 3, 3))
  same = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME")
  assert benchmark.program_flops(same, x, k) == 2 * 100
  # ... nor the holes of a transposed convolution's dilated input: 16 pixels x 9 taps.
  up = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2))
  assert benchmark.program_flops(up, x, k) == 2 * 16 * 9
  assert benchmark.peak_tflops("NVIDIA H200", "bfloat16") == 989.4
  assert benchmark.peak_tflops("TPU v4", "float32") is None
  assert benchmark.peak_tflops("cpu", "float32") is None


@pytest.mark.slow
def test_every_step_is_timed_with_ratios_when_torch_is_there(tiny_config):
  with_torch = importlib.util.find_spec("torch") is not None
  cfg = tiny_config.copy_and_resolve_references()
  names = ("phi", "fesgan_g")  # a plain step and a GAN update (all six take minutes here)
  # Each framework (and PyTorch variant) timed in a process of its own, as training runs it.
  rows = benchmark.shape_benchmarks(cfg, 2, with_torch, names=names,
                                    argv_config=["--config", "configs/tiny.py"],
                                    torch_variants=("eager", "tuned"))
  assert tuple(rows) == names
  for row in rows.values():
    assert row["jfesgan_s"] > 0 and row["jfesgan_compile_plus_first_s"] >= row["jfesgan_s"]
    assert row["gflops_per_step"] > 0 and "jfesgan_mfu" not in row  # no peak known for a CPU
    if with_torch:
      assert row["jfesgan_train_s"] > 0 and row["threads"] >= 1
      best = min(row["torch_eager_s"], row["torch_tuned_s"])
      assert row["torch_best_s"] == best and row[f"torch_{row['torch_best']}_s"] == best
      assert row["ratio"] == pytest.approx(row["jfesgan_train_s"] / best, rel=0.01, abs=2e-3)
      assert row["ratio_eager"] == pytest.approx(row["jfesgan_train_s"] / row["torch_eager_s"],
                                                 rel=0.01, abs=2e-3)
  report = {"torch": "x" if with_torch else None, "shapes": {"32x32x1": rows}}
  lines = benchmark.table(report).splitlines()
  assert len(lines) == 2 + len(rows) and lines[2].startswith("| 32x32x1 | phi |")
  if with_torch:
    assert "PyTorch tuned s" in lines[0] and "ratio vs best" in lines[0]


def test_timing_runs_back_to_back_and_waits_once_per_round():
  from jfesgan.bench import timing
  events = []
  out = timing.as_training_runs(lambda: events.append("call") or len(events),
                                lambda _: events.append("sync"), steps=4, warmup=2, rounds=3)
  # Two warm-ups each waited for, then 3 rounds of 4 calls with one wait at the end of each.
  assert events == ["call", "sync"] * 2 + (["call"] * 4 + ["sync"]) * 3
  assert len(out["round_step_s"]) == 3 and out["step_s"] == sorted(out["round_step_s"])[1]
  with pytest.raises(ValueError, match="steps, warmup and rounds must be >= 1"):
    timing.as_training_runs(lambda: None, lambda _: None, steps=0)


@pytest.mark.slow
def test_memory_probe_runs_in_a_fresh_process():
  mem = benchmark._memory_probe(["--config", "configs/tiny.py"], "jax", "phi", (32, 1))  # pylint: disable=protected-access
  assert 100 < mem["before_mb"] <= mem["first_call_peak_mb"] <= mem["peak_mb"]
  assert mem["step_peak_mb"] <= mem["peak_mb"]


def test_memory_probe_builds_only_the_states_its_step_needs():
  needed = lambda step: stages.lineage(benchmark._stage_of(step))  # pylint: disable=protected-access
  assert needed("phi") == ("phi",) and needed("real") == ("real",)
  assert needed("fesgan_d") == needed("fesgan_g") == needed("fesgan") == ("phi", "fesgan")
  assert needed("joint") == ("phi", "fesgan", "joint")


def test_trunk_layers_are_timed_layer_by_layer_and_summed(tiny_config):
  """--trunk_layers: one row per layer of the Phi / R trunk (a stride-2 and a 3x3 convolution per
  level, then the dense layer), beside PyTorch's same layer when it is installed, and the table's
  sum row adds them up."""
  with_torch = importlib.util.find_spec("torch") is not None
  cfg = tiny_config.copy_and_resolve_references()  # 32x32x1, widths 8, 16, 16, embedding 16
  rows = benchmark.trunk_layer_benchmarks(cfg, 2, with_torch)
  assert [r["layer"] for r in rows] == [
      "conv 4x4/2 32x32x1->8", "conv 3x3/1 16x16x8->8", "conv 4x4/2 16x16x8->16",
      "conv 3x3/1 8x8x16->16", "conv 4x4/2 8x8x16->16", "conv 3x3/1 4x4x16->16", "dense 256->16"]
  assert all(r["jfesgan_ms"] > 0 for r in rows)
  report = {"shapes": {}, "trunk_layers": {"32x32x1": rows}}
  sum_row = next(line for line in benchmark.trunk_table(report).splitlines() if "sum" in line)
  assert f"| {sum(r['jfesgan_ms'] for r in rows):.1f} |" in sum_row
  if with_torch:
    for r in rows:
      assert r["torch_ms"] > 0 and r["ratio"] == pytest.approx(r["jfesgan_ms"] / r["torch_ms"],
                                                               abs=0.011)


def test_trunk_layers_refuse_a_pytorch_layer_that_computes_something_else(tiny_config,
                                                                          monkeypatch):
  """The PyTorch layer is checked to give jfesgan's loss before either is timed."""
  torch_reference = pytest.importorskip("jfesgan.bench.torch_reference")
  real = torch_reference.trunk_layer_call

  def off(x, kernel, bias, stride, input_grad):  # the right layer, another bias
    return real(x, kernel, bias + 1.0, stride, input_grad)
  monkeypatch.setattr(torch_reference, "trunk_layer_call", off)
  with pytest.raises(RuntimeError, match=r"trunk layer conv 4x4/2 32x32x1->8: PyTorch's loss"):
    benchmark.trunk_layer_benchmarks(tiny_config, 1, True)


def test_the_cpu_is_named_with_its_vector_extensions(tmp_path):
  info = tmp_path / "cpuinfo"
  info.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse avx2 "
                  "avx512f avx512bw avx512_vnni\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) "
                  "Processor\nflags\t\t: fpu\n")
  assert benchmark.cpu_model(str(info)) == "Intel(R) Xeon(R) Processor [avx2, avx512f, avx512_vnni]"
  info.write_text("model name\t: AMD EPYC\nflags\t\t: fpu sse\n")
  assert benchmark.cpu_model(str(info)) == "AMD EPYC"
