"""The PyTorch yardstick of the benchmark computes the same functions as jfesgan's networks.

Needs PyTorch (``pip install -e ".[bench]"``); skipped without it.
"""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from configs import default  # noqa: E402
from jfesgan import state as state_lib  # noqa: E402
from jfesgan.bench import torch_reference  # noqa: E402
from jfesgan.models import build_models  # noqa: E402


def _config(size=16, channels=1, num_down=2):
  c = default.get_config()
  c.data.image_size, c.data.channels = size, channels
  c.model.width, c.model.max_width, c.model.num_down = 8, 16, num_down
  c.model.latent_dim, c.model.embed_dim, c.model.dz_hidden = 12, 10, (16, 16)
  return c


def _jax_params(c, k, s):
  models = build_models(c, k, s)
  phi = state_lib.create_phi_state(models, c.phi.optimizer, jax.random.key(0))
  fes = state_lib.create_fesgan_states(models, c.fesgan.optimizer, jax.random.key(1), phi)
  r = state_lib.create_r_state(models, c.real.optimizer, jax.random.key(2))
  # Non-zero FiLM and GroupNorm parameters, so that their layouts are checked too.
  noisy = lambda tree, seed: jax.tree.map(
      lambda a: a + 0.1 * jax.random.normal(jax.random.key(seed), a.shape), tree)
  params = {"g": noisy(fes.g.params, 3), "dimg": fes.dimg.params, "dz": fes.dz.params,
            "phi": phi.params, "r": noisy(r.params, 4)}
  return models, params


@pytest.mark.parametrize("size,channels,num_down,upsample", [
    (16, 1, 2, "transpose"), (16, 3, 3, "transpose"), (16, 1, 2, "blur")])
def test_same_parameter_counts_and_outputs(size, channels, num_down, upsample):
  c = _config(size, channels, num_down)
  c.model.g_upsample = upsample
  k, s = 5, 9
  models, params = _jax_params(c, k, s)
  ref = torch_reference.TorchReference(c, k, s)
  counts = {name: sum(a.size for a in jax.tree.leaves(p)) for name, p in params.items()}
  assert ref.parameter_counts() == counts
  torch_reference.load_jax_params(ref, params)
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (4, size, size, channels)).astype(np.float32)
  z = rng.uniform(-1, 1, (4, c.model.latent_dim)).astype(np.float32)
  cc = np.eye(k, dtype=np.float32)[[0, 1, 2, 4]]
  got = torch_reference.forward_outputs(ref, x, z, cc)
  want = {"encode": models.g.apply({"params": params["g"]}, x, method="encode"),
          "decode": models.g.apply({"params": params["g"]}, z, cc, method="decode"),
          "dimg_critic": models.dimg.apply({"params": params["dimg"]}, x)[0],
          "dimg_logits": models.dimg.apply({"params": params["dimg"]}, x)[1],
          "dz": models.dz.apply({"params": params["dz"]}, z),
          "phi_embed": models.phi.apply({"params": params["phi"]}, x, method="embed"),
          "phi_logits": models.phi.apply({"params": params["phi"]}, x)[1],
          "r_feat": models.r.apply({"params": params["r"]}, x)[0],
          "r_logits": models.r.apply({"params": params["r"]}, x)[1]}
  for name, value in want.items():
    np.testing.assert_allclose(got[name], np.asarray(value), rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("autocast", [None, "bfloat16"])
def test_steps_run_and_train_their_networks(autocast):
  c = _config()
  ref = torch_reference.TorchReference(c, 5, 9)
  if autocast:  # the GPU benchmark's bf16 mode (torch.autocast), here on the CPU's autocast
    ref.to("cpu", getattr(torch, autocast))
  rng = np.random.default_rng(0)
  batch = torch_reference.to_torch_batch({
      "image": rng.uniform(-1, 1, (4, 16, 16, 1)), "label": rng.integers(0, 5, 4),
      "subject": rng.integers(0, 9, 4)})
  trained = {"phi": ("phi",), "real": ("real",), "fesgan": ("g", "dimg", "dz"),
             "joint": ("g", "dimg", "dz", "r")}
  for stage, names in trained.items():
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in ref.nets.items()}
    ref.step(stage, batch)
    for n, net in ref.nets.items():
      moved = any(not torch.equal(a, b) for a, b in zip(before[n], net.parameters()))
      assert moved == (n in names), (stage, n)
      assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in net.parameters())


def test_the_benchmark_runs_pytorch_in_the_configs_dtype_on_the_cpu():
  """bfloat16 runs are compared with PyTorch's bfloat16 autocast on the CPU too (oneDNN's bf16
  kernels where the CPU has AVX-512 BF16 or AMX), float32 runs with plain float32; and under
  that autocast the networks' convolutions do compute in bfloat16."""
  from jfesgan.bench import benchmark  # noqa: PLC0415 (imports JAX's backends)
  c = _config()
  assert benchmark.torch_device(c) == ("cpu", None)
  c.model.dtype = "bfloat16"
  assert benchmark.torch_device(c) == ("cpu", torch.bfloat16)
  assert torch_reference.autocast_dtype(c) is torch.bfloat16
  ref = torch_reference.TorchReference(c, 5, 9).to("cpu", torch_reference.autocast_dtype(c))
  x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 1, 16, 16)).astype(np.float32))
  with torch.autocast("cpu", dtype=ref.autocast):
    assert ref.nets["r"](x)[1].dtype == torch.bfloat16


def test_the_tuned_variant_computes_what_eager_does_and_both_report_jfesgans_metrics():
  """Fused Adam and channels-last change how PyTorch runs, not what it computes; every step
  leaves the metrics jfesgan's steps return (norms of each updated network, losses, accuracies)."""
  c = _config()
  rng = np.random.default_rng(0)
  host = {"image": rng.uniform(-1, 1, (4, 16, 16, 1)), "label": rng.integers(0, 5, 4),
          "subject": rng.integers(0, 9, 4)}
  refs = {v: torch_reference.TorchReference(c, 5, 9, **torch_reference.VARIANTS[v])
          for v in ("eager", "tuned")}
  seen = {}
  for v, ref in refs.items():
    batch = torch_reference.to_torch_batch(host, channels_last=v == "tuned")
    if v == "tuned":
      assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    for stage in ("phi", "real", "fesgan", "joint"):
      ref.metrics.clear()
      torch.manual_seed(1)
      ref.step(stage, batch)
      seen[v, stage] = {k: float(x) for k, x in ref.metrics.items()}
      updated = {"phi": ["phi"], "real": ["real"], "fesgan": ["dimg", "dz", "g"],
                 "joint": ["dimg", "dz", "g", "r"]}[stage]
      for net in updated:
        for m in ("grad_norm", "param_norm", "update_norm"):
          assert seen[v, stage][f"{net}/{m}"] > 0, (stage, net, m)
      if stage in ("fesgan", "joint"):
        assert {"dimg/wasserstein", "dimg/gp", "dimg/cls_acc", "dz/real_prob", "g/rec",
                "g/expr_acc_t", "g/loss"} <= set(seen[v, stage]), stage
  # The same metrics; the same values where the networks read are still as initialised (the
  # classifiers' steps, stage 1's discriminator update): Adam's sign-like first steps let rounding
  # differences move single parameters by a learning rate, which later losses then show.
  for stage in ("phi", "real", "fesgan", "joint"):
    eager, tuned = seen["eager", stage], seen["tuned", stage]
    assert eager.keys() == tuned.keys()
    for k in eager:
      if stage in ("phi", "real") or k.startswith(("dimg/", "dz/")) and stage == "fesgan":
        assert tuned[k] == pytest.approx(eager[k], rel=2e-3, abs=1e-4), (stage, k)


def test_refuses_what_it_does_not_mirror():
  c = _config()
  c.real.augment.shift = 0.1
  with pytest.raises(ValueError, match=r"config.real.augment.shift"):
    torch_reference.check_config(c)
  c = _config()
  c.model.g_depth = 1
  with pytest.raises(ValueError, match=r"g_depth=1 must be 0"):
    torch_reference.check_config(c)
  c = _config()
  c.model.g_upsample = "resize"
  with pytest.raises(ValueError, match=r"g_upsample='resize' one of \('transpose', 'blur'\)"):
    torch_reference.check_config(c)
  c = _config()
  c.model.r_arch = "residual"
  with pytest.raises(ValueError, match=r"config.model.r_arch='residual' must be 'trunk'"):
    torch_reference.check_config(c)
  c = _config()
  c.real.intra_weight = 0.01
  with pytest.raises(ValueError, match=r"config.real.intra_weight=0.01 must be 0"):
    torch_reference.check_config(c)
