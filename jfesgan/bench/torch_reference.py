"""The same networks, losses and update order as jfesgan, in PyTorch: the yardstick of the benchmark.

``jfesgan benchmark --torch`` checks that these networks compute jfesgan's functions, then times
each step of each framework as training runs it, in a process of its own (:func:`time_steps`),
at the same shapes, batch and thread count (``pip install -e ".[bench]"`` for PyTorch).  Nothing
in training imports this module.

PyTorch runs in three :data:`VARIANTS`: ``eager`` (plain: NCHW, ``torch.optim.Adam``'s default
implementation), ``tuned`` (fused Adam, channels-last tensors) and ``compiled`` (``tuned`` with
every network's forward through ``torch.compile``, except D_img's: the gradient penalty
differentiates it twice, which compiled graphs do not support).  Every step computes the metrics
jfesgan's steps return (each loss term, accuracies, and each updated network's gradient,
parameter and update norms), as tensors, with no host synchronisation, as jfesgan's do.

Each network mirrors its Flax module layer for layer (:mod:`jfesgan.models`), with PyTorch's own
layers (``nn.Conv2d``, ``nn.ConvTranspose2d``, ``nn.GroupNorm``, ``nn.Linear``) in NCHW, the
layout PyTorch's CPU and GPU kernels prefer; :func:`load_jax_params` copies jfesgan parameters in
(kernels transposed, dense rows permuted between NHWC and NCHW flattening) so that
``tests/torch_reference_test.py`` and every benchmark run check that both compute the same
function, and both have the same parameter counts.  The steps follow :mod:`jfesgan.steps`:

- ``phi`` / ``real``: one Adam step of a cross-entropy classifier.
- ``fesgan``: a D_img + D_z step (WGAN-GP critic with a true second-order penalty through
  ``torch.autograd.grad(create_graph=True)``, drift, expression head on real images;
  non-saturating D_z), then a generator step (adversarial, latent, expression, L1 reconstruction,
  identity and total-variation terms) on the same batch.
- ``joint``: the discriminator step, then one forward pass whose R loss (real and synthetic
  cross-entropy, intra-class loss with real-data-guided back-propagation) updates R and whose
  generator loss (stage-1 terms + beta x R's synthetic terms) updates the generator, each through
  ``torch.autograd.grad`` of its own loss.

Data augmentation of stage 1's critic and the recognisers is not mirrored: ``check_config``
refuses a config that turns it on.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
import torch
from absl import app, flags
from ml_collections import config_flags
from torch import nn
from torch.nn import functional as F

from jfesgan.bench import timing
from jfesgan.bench.memory import probe


def _widths(m) -> list[int]:
  return [min(m.width * 2**i, m.max_width) for i in range(m.num_down)]


def _groups(c: int) -> int:
  return next(g for g in (8, 4, 2, 1) if c % g == 0)


# The decoder upsamplings mirrored here (model.g_upsample): jfesgan.models.layers' transposed
# convolution, and the same followed by its fixed [1, 2, 1] blur.
MIRRORED_UPSAMPLING = ("transpose", "blur")


def _blur(h):
  """jfesgan.models.layers.binomial_blur in NCHW: [1, 2, 1] / 4 along each spatial axis, edges
  repeated.  As PyTorch computes it fastest: one depthwise 3x3 convolution with the fixed
  kernel on the edge-padded input (forward and backward 1.9-4.9x faster than the shifted sums the
  JAX side uses, which are XLA:CPU's fastest form, on a 2-core Intel Xeon at 16x32x64x64,
  16x32x48x48 and 16x64x24x24, in either memory format)."""
  c = h.shape[1]
  taps = torch.tensor([0.25, 0.5, 0.25], dtype=h.dtype, device=h.device)
  kernel = (taps[:, None] * taps[None, :]).expand(c, 1, 3, 3)
  if h.is_contiguous(memory_format=torch.channels_last):
    kernel = kernel.contiguous(memory_format=torch.channels_last)
  if torch.compiler.is_compiling():
    # torch 2.13's inductor fails on the backward of replicate padding of channels-last tensors
    # (a stride assertion in replication_pad2d_backward); edges concatenated compile (eagerly
    # they are 1.1-2x slower than F.pad, so only here).
    h = torch.cat([h[:, :, :1], h, h[:, :, -1:]], 2)
    padded = torch.cat([h[:, :, :, :1], h, h[:, :, :, -1:]], 3)
  else:
    padded = F.pad(h, (1, 1, 1, 1), mode="replicate")
  return F.conv2d(padded, kernel, groups=c)


def check_config(config) -> None:
  """Raises ValueError when ``config`` asks for something this reference does not mirror."""
  sections = {"real.augment": config.real.augment, "joint.augment": config.joint.augment,
              "fesgan.dimg_augment": config.fesgan.get("dimg_augment", {})}
  on = [f"config.{name}.{k}" for name, section in sections.items() for k, v in section.items() if v]
  if on:
    raise ValueError(f"the PyTorch reference does not mirror augmentation; {on} must be 0 for "
                     "--torch")
  if (config.model.get("g_width", 0) or config.model.get("g_depth", 0)
      or config.model.get("g_upsample", "transpose") not in MIRRORED_UPSAMPLING
      or config.model.get("g_edit", "none") not in ("none", False)):
    raise ValueError(f"the PyTorch reference mirrors the default generator only; "
                     f"config.model.g_width={config.model.g_width}, "
                     f"g_depth={config.model.g_depth} must be 0, "
                     f"g_upsample={config.model.get('g_upsample', 'transpose')!r} one of "
                     f"{MIRRORED_UPSAMPLING} and "
                     f"g_edit={config.model.get('g_edit', 'none')!r} 'none'")
  if config.model.get("r_arch", "trunk") != "trunk":
    raise ValueError(f"the PyTorch reference mirrors R of the trunk family only; "
                     f"config.model.r_arch={config.model.r_arch!r} must be 'trunk' for --torch")
  if config.real.get("intra_weight", 0.0):
    raise ValueError(f"the PyTorch reference's real-only R learns from cross-entropy only; "
                     f"config.real.intra_weight={config.real.intra_weight} must be 0")
  if config.fesgan.get("cycle_weight", 0.0):
    raise ValueError(f"the PyTorch reference mirrors METHOD.md's generator terms only; "
                     f"config.fesgan.cycle_weight={config.fesgan.cycle_weight} must be 0")
  if config.fesgan.get("gan_loss", "wgan_gp") != "wgan_gp":
    raise ValueError(f"the PyTorch reference mirrors METHOD.md's WGAN-GP only; "
                     f"config.fesgan.gan_loss={config.fesgan.gan_loss!r}")
  for name, section in (("phi", config.phi.optimizer), ("real", config.real.optimizer),
                        *((f"fesgan.{p}", config.fesgan.optimizer[p]) for p in ("g", "dimg", "dz"))):
    if (section.name != "adam" or section.weight_decay or section.schedule != "constant"
        or section.warmup or section.grad_clip):
      raise ValueError(f"the PyTorch reference mirrors plain Adam at a constant rate only; "
                       f"config.{name}.optimizer is {dict(section)}")


class _StridedStack(nn.Module):
  """num_down 4x4 stride-2 convolutions + leaky ReLU (0.2), flattened: E's and D_img's body."""

  def __init__(self, m, image_size: int, channels: int):
    super().__init__()
    widths, c = _widths(m), channels
    self.convs = nn.ModuleList()
    for w in widths:
      self.convs.append(nn.Conv2d(c, w, 4, 2, 1))
      c = w
    self.out_features = (image_size // 2**m.num_down)**2 * c

  def forward(self, x):
    for conv in self.convs:
      x = F.leaky_relu(conv(x), 0.2)
    return x.flatten(1)


class Encoder(nn.Module):
  """E: the strided stack, then a dense layer and tanh."""

  def __init__(self, m, image_size: int, channels: int):
    super().__init__()
    self.body = _StridedStack(m, image_size, channels)
    self.dense = nn.Linear(self.body.out_features, m.latent_dim)

  def forward(self, x):
    return torch.tanh(self.dense(self.body(x)))


class Decoder(nn.Module):
  """G: dense to the bottleneck, then FiLM-modulated GroupNorm + ReLU around 4x4 stride-2
  transposed convolutions, tanh."""

  def __init__(self, m, image_size: int, channels: int, num_classes: int):
    super().__init__()
    widths = _widths(m)[::-1]
    self.s, self.w0 = image_size // 2**m.num_down, widths[0]
    self.dense = nn.Linear(m.latent_dim + num_classes, self.s * self.s * widths[0], bias=False)
    self.norms = nn.ModuleList([nn.GroupNorm(_groups(w), w, eps=1e-6) for w in widths])
    self.films = nn.ModuleList([nn.Linear(num_classes, 2 * w) for w in widths])
    self.ups = nn.ModuleList([nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False)
                              for a, b in zip(widths, widths[1:])])
    self.out = nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1)
    # model.g_upsample="blur": each transposed convolution's output blurred.
    self.blur = m.get("g_upsample", "transpose") == "blur"

  def _up(self, layer, h):
    return _blur(layer(h)) if self.blur else layer(h)

  def _film(self, h, c, i):
    gamma, beta = self.films[i](c)[:, :, None, None].chunk(2, dim=1)
    return F.relu(self.norms[i](h) * (1 + gamma) + beta)

  def forward(self, z, c):
    h = self.dense(torch.cat([z, c], -1)).view(-1, self.w0, self.s, self.s)
    h = self._film(h, c, 0)
    for i, up in enumerate(self.ups, start=1):
      h = self._film(self._up(up, h), c, i)
    return torch.tanh(self._up(self.out, h))


class Generator(nn.Module):
  def __init__(self, m, image_size, channels, num_classes):
    super().__init__()
    self.encoder = Encoder(m, image_size, channels)
    self.decoder = Decoder(m, image_size, channels, num_classes)


class ImageDiscriminator(nn.Module):
  """D_img: the strided stack; critic and expression heads."""

  def __init__(self, m, image_size, channels, num_classes):
    super().__init__()
    self.body = _StridedStack(m, image_size, channels)
    self.critic = nn.Linear(self.body.out_features, 1)
    self.classifier = nn.Linear(self.body.out_features, num_classes)

  def forward(self, x):
    h = self.body(x)
    return self.critic(h)[:, 0], self.classifier(h)


class LatentDiscriminator(nn.Module):
  def __init__(self, m):
    super().__init__()
    dims = [m.latent_dim, *m.dz_hidden]
    self.hidden = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims, dims[1:])])
    self.out = nn.Linear(dims[-1], 1)

  def forward(self, z):
    for layer in self.hidden:
      z = F.leaky_relu(layer(z), 0.2)
    return self.out(z)[:, 0]


class ConvTrunk(nn.Module):
  """Per-image standardisation, per level a 4x4 stride-2 and a 3x3 convolution + ReLU, dense."""

  def __init__(self, m, image_size, channels):
    super().__init__()
    widths, c = _widths(m), channels
    self.convs = nn.ModuleList()
    for w in widths:
      self.convs.append(nn.Conv2d(c, w, 4, 2, 1))
      self.convs.append(nn.Conv2d(w, w, 3, 1, 1))
      c = w
    s = image_size // 2**m.num_down
    self.dense = nn.Linear(s * s * c, m.embed_dim)

  def forward(self, x):
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    h = (x - mean) / (x.std(dim=(1, 2, 3), keepdim=True, unbiased=False) + 1e-3)
    for conv in self.convs:
      h = F.relu(conv(h))
    return self.dense(h.flatten(1))


class IdentityNet(nn.Module):
  def __init__(self, m, image_size, channels, num_subjects, scale: float = 16.0):
    super().__init__()
    self.trunk = ConvTrunk(m, image_size, channels)
    self.subject_directions = nn.Parameter(torch.randn(m.embed_dim, num_subjects))
    self.scale = scale

  def embed(self, x):
    f = self.trunk(x)
    return f / (f.norm(dim=-1, keepdim=True) + 1e-6)

  def forward(self, x):
    e = self.embed(x)
    d = self.subject_directions
    return e, self.scale * (e @ (d / (d.norm(dim=0, keepdim=True) + 1e-6)))


class Recogniser(nn.Module):
  def __init__(self, m, image_size, channels, num_classes):
    super().__init__()
    self.trunk = ConvTrunk(m, image_size, channels)
    self.head = nn.Linear(m.embed_dim, num_classes)

  def forward(self, x):
    f = F.relu(self.trunk(x))
    return f, self.head(f)


class _RdbpIntraClass(torch.autograd.Function):
  """The intra-class loss with real-data-guided back-propagation (jfesgan.grad_rules)."""

  @staticmethod
  def forward(ctx, f_real, f_syn, y_real, y_syn, memory):
    k = memory.shape[0]
    counts = torch.bincount(y_real, minlength=k).to(f_real.dtype)
    sums = torch.zeros_like(memory).index_add_(0, y_real, f_real)
    centres = torch.where((counts > 0)[:, None], sums / counts.clamp(min=1)[:, None], memory)
    d_real = f_real - centres[y_real]
    d_syn = f_syn - centres[y_syn]
    n_r, n_s = max(f_real.shape[0], 1), max(f_syn.shape[0], 1)
    ctx.save_for_backward(d_real / n_r, d_syn / n_s)
    return 0.5 * (d_real**2).sum() / n_r + 0.5 * (d_syn**2).sum() / n_s

  @staticmethod
  def backward(ctx, g):
    g_real, g_syn = ctx.saved_tensors
    return g * g_real, g * g_syn, None, None, None


def _gradient_penalty(critic, real, fake):
  alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
  x_hat = (real + alpha * (fake - real)).requires_grad_(True)
  grads, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
  norms = torch.sqrt((grads.flatten(1)**2).sum(-1) + 1e-12)
  return ((norms - 1.0)**2).mean()


def _tv(images):
  return ((images[:, :, 1:] - images[:, :, :-1]).abs().mean()
          + (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean())


# How PyTorch is run (TorchReference's options); the benchmark's ratio is against the fastest.
VARIANTS = {
    "eager": {},
    "tuned": {"fused": True, "channels_last": True},
    "compiled": {"fused": True, "channels_last": True, "compile": True},
}


def _norm(tensors) -> torch.Tensor:
  """The global L2 norm of a list of tensors (optax.global_norm)."""
  return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))  # pylint: disable=protected-access


def _acc(logits, labels) -> torch.Tensor:
  return (logits.argmax(-1) == labels).float().mean()


class TorchReference:
  """All networks, one Adam optimiser per network, and the four stages' steps.

  Batches are dicts of tensors: ``image`` (N, C, H, W) in [-1, 1], ``label`` and ``subject`` (N,).
  The reference is built on the CPU; :meth:`to` moves it (``"cuda"`` for the GPU benchmark), and
  ``autocast`` (``torch.bfloat16``) runs each step under ``torch.autocast`` with float32
  parameters, as jfesgan's ``model.dtype="bfloat16"`` does.  ``fused``: fused Adam;
  ``channels_last``: networks (and the batches :func:`to_torch_batch` makes with it) in the
  channels-last memory format; ``compile``: every network but D_img called through
  ``torch.compile`` (see :data:`VARIANTS`).  After each step ``metrics`` holds what jfesgan's
  step returns, as tensors.
  """

  def __init__(self, config, num_classes: int, num_subjects: int, seed: int = 0, *,
               fused: bool = False, channels_last: bool = False, compile: bool = False):  # pylint: disable=redefined-builtin
    check_config(config)
    torch.manual_seed(seed)
    m, d = config.model, config.data
    size, ch = d.image_size, d.channels
    self.config, self.k, self.latent_dim = config, num_classes, m.latent_dim
    self.nets = {
        "g": Generator(m, size, ch, num_classes),
        "dimg": ImageDiscriminator(m, size, ch, num_classes),
        "dz": LatentDiscriminator(m),
        "phi": IdentityNet(m, size, ch, num_subjects),
        "r": Recogniser(m, size, ch, num_classes),
        "real": Recogniser(m, size, ch, num_classes),
    }
    if channels_last:
      for net in self.nets.values():
        net.to(memory_format=torch.channels_last)
    opt = lambda net, s: torch.optim.Adam(net.parameters(), lr=s.lr, betas=(s.b1, s.b2), eps=1e-8,
                                          fused=fused or None)
    fo = config.fesgan.optimizer
    self.opts = {"g": opt(self.nets["g"], fo.g), "dimg": opt(self.nets["dimg"], fo.dimg),
                 "dz": opt(self.nets["dz"], fo.dz), "phi": opt(self.nets["phi"], config.phi.optimizer),
                 "real": opt(self.nets["real"], config.real.optimizer),
                 "r": opt(self.nets["r"], config.joint.optimizer)}
    self.centres = torch.zeros(num_classes, m.embed_dim)
    f, j = config.fesgan, config.joint
    self.w = {name: float(f[f"{name}_weight"]) for name in
              ("gp", "drift", "dimg_cls", "adv", "latent", "expr", "rec", "identity", "tv")}
    self.joint = j
    self.device, self.autocast = torch.device("cpu"), None
    self.metrics: dict[str, torch.Tensor] = {}
    # The forward calls the steps make: the modules themselves, or compiled (D_img never: its
    # gradient penalty needs a second derivative).
    g, phi = self.nets["g"], self.nets["phi"]
    self.fwd = {"encoder": g.encoder, "decoder": g.decoder, "phi": phi, "phi_embed": phi.embed,
                "dz": self.nets["dz"], "r": self.nets["r"], "real": self.nets["real"]}
    if compile:
      self.fwd = {name: torch.compile(fn) for name, fn in self.fwd.items()}

  def to(self, device: str, autocast: torch.dtype | None = None) -> TorchReference:
    """Moves every network, optimiser and the class centres to ``device``; steps then run under
    ``torch.autocast(dtype=autocast)`` unless it is None."""
    self.device, self.autocast = torch.device(device), autocast
    for net in self.nets.values():
      net.to(self.device)  # in place: the optimisers keep the same Parameter objects
    for opt in self.opts.values():
      for st in opt.state.values():
        for k, v in st.items():
          if torch.is_tensor(v) and k != "step":
            st[k] = v.to(self.device)
    self.centres = self.centres.to(self.device)
    return self

  def parameter_counts(self) -> dict[str, int]:
    """Parameters per network, keyed like jfesgan's stages' trees."""
    return {name: sum(p.numel() for p in net.parameters())
            for name, net in self.nets.items() if name != "real"}

  # --- shared pieces -----------------------------------------------------------------------

  def _grads(self, name: str, loss, retain_graph: bool = False) -> list:
    params = list(self.nets[name].parameters())
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

  def _apply(self, name: str, grads: list) -> None:
    params = list(self.nets[name].parameters())
    with torch.no_grad():
      before = torch._foreach_mul(params, 1.0)  # pylint: disable=protected-access
    for p, g in zip(params, grads):
      p.grad = g
    self.opts[name].step()
    with torch.no_grad():  # jfesgan.steps.apply_grads' metrics
      self.metrics.update({f"{name}/grad_norm": _norm(grads), f"{name}/param_norm": _norm(params),
                           f"{name}/update_norm": _norm(torch._foreach_sub(params, before))})  # pylint: disable=protected-access

  def _update(self, name: str, loss) -> None:
    self._apply(name, self._grads(name, loss))

  def _synthesise(self, x, y, reconstruct=True):
    n = x.shape[0]
    dev = x.device
    c_t = (y + torch.randint(1, self.k, (n,), device=dev)) % self.k
    z_p = torch.rand(n, self.latent_dim, device=dev) * 2 - 1
    c_p = torch.randint(0, self.k, (n,), device=dev)
    z = self.fwd["encoder"](x)
    codes, labels = [z, z_p], [c_t, c_p]
    if reconstruct:
      codes, labels = [z] + codes, [y] + labels
    out = self.fwd["decoder"](torch.cat(codes),
                              F.one_hot(torch.cat(labels), self.k).float()).chunk(len(codes))
    syn = dict(z=z, x_t=out[-2], x_p=out[-1], c_t=c_t, c_p=c_p)
    if reconstruct:
      syn["x_rec"] = out[0]
    return syn

  def _discriminator_update(self, x, y) -> None:
    with torch.no_grad():
      syn = self._synthesise(x, y, reconstruct=False)
    dimg, dz, w, n = self.nets["dimg"], self.fwd["dz"], self.w, x.shape[0]
    fake = torch.cat([syn["x_t"], syn["x_p"]])
    scores, logits = dimg(torch.cat([x, fake]))
    real_s, fake_s = scores[:n], scores[n:]
    gp = _gradient_penalty(lambda im: dimg(im)[0], torch.cat([x, x]), fake)
    drift, cls = (real_s**2).mean(), F.cross_entropy(logits[:n], y)
    adv = fake_s.mean() - real_s.mean()
    dimg_loss = adv + w["gp"] * gp + w["drift"] * drift + w["dimg_cls"] * cls
    z_prior = torch.rand_like(syn["z"]) * 2 - 1
    real_z, fake_z = dz(z_prior), dz(syn["z"])
    dz_loss = F.softplus(-real_z).mean() + F.softplus(fake_z).mean()
    self.metrics.update({  # jfesgan.steps.discriminator_losses' metrics
        "dimg/loss": dimg_loss.detach(), "dimg/wasserstein": -adv.detach(), "dimg/gp": gp.detach(),
        "dimg/drift": drift.detach(), "dimg/cls": cls.detach(),
        "dimg/cls_acc": _acc(logits[:n].detach(), y), "dz/loss": dz_loss.detach(),
        "dz/real_prob": torch.sigmoid(real_z.detach()).mean(),
        "dz/fake_prob": torch.sigmoid(fake_z.detach()).mean()})
    self._update("dimg", dimg_loss)
    self._update("dz", dz_loss)

  def _generator_terms(self, x, y, syn):
    n = x.shape[0]
    scores, logits = self.nets["dimg"](torch.cat([syn["x_t"], syn["x_p"]]))
    e = self.fwd["phi_embed"](torch.cat([x, syn["x_t"], syn["x_rec"]]))
    e_x, e_t, e_rec = e[:n], e[n:2 * n], e[2 * n:]
    with torch.no_grad():
      self.metrics.update({"g/expr_acc_t": _acc(logits[:n], syn["c_t"]),
                           "g/expr_acc_p": _acc(logits[n:], syn["c_p"])})
    return {
        "adv": -scores[:n].mean() - scores[n:].mean(),
        "latent": F.softplus(-self.fwd["dz"](syn["z"])).mean(),
        "expr": F.cross_entropy(logits[:n], syn["c_t"]) + F.cross_entropy(logits[n:], syn["c_p"]),
        "rec": (x - syn["x_rec"]).abs().mean(),
        "identity": (e_x - e_t).abs().mean() + (e_x - e_rec).abs().mean(),
        "tv": _tv(syn["x_t"]) + _tv(syn["x_p"]),
    }

  def _generator_total(self, terms):
    total = sum(self.w[name] * v for name, v in terms.items())
    self.metrics.update({f"g/{k}": v.detach() for k, v in terms.items()})
    self.metrics["g/loss"] = total.detach()
    return total

  # --- the stages' steps --------------------------------------------------------------------

  def _classifier_step(self, name: str, prefix: str, x, labels) -> None:
    _, logits = self.fwd[name](x)
    loss = F.cross_entropy(logits, labels)
    self.metrics.update({f"{prefix}/loss": loss.detach(), f"{prefix}/acc": _acc(logits.detach(),
                                                                                labels)})
    self._update(name, loss)

  def phi_step(self, batch) -> None:
    self._classifier_step("phi", "phi", batch["image"], batch["subject"])

  def real_step(self, batch) -> None:
    self._classifier_step("real", "real", batch["image"], batch["label"])

  def fesgan_step(self, batch) -> None:
    self.fesgan_d_step(batch)
    self.fesgan_g_step(batch)

  def fesgan_d_step(self, batch) -> None:
    """Stage 1's discriminator update alone."""
    self._discriminator_update(batch["image"], batch["label"])

  def fesgan_g_step(self, batch) -> None:
    """Stage 1's generator update alone."""
    x, y = batch["image"], batch["label"]
    syn = self._synthesise(x, y)
    self._update("g", self._generator_total(self._generator_terms(x, y, syn)))

  def joint_step(self, batch) -> None:
    x, y, j, n = batch["image"], batch["label"], self.joint, batch["image"].shape[0]
    if j.train_discriminators:
      self._discriminator_update(x, y)
    syn = self._synthesise(x, y)
    g_terms = self._generator_terms(x, y, syn)
    pools = {"prior": (syn["x_p"], syn["c_p"]), "translation": (syn["x_t"], syn["c_t"])}
    m = int(round(j.syn_ratio * n))
    sizes = [m // len(j.synthetic) + (i < m % len(j.synthetic)) for i in range(len(j.synthetic))]
    x_s = torch.cat([pools[kind][0][:s] for kind, s in zip(j.synthetic, sizes)])
    c_s = torch.cat([pools[kind][1][:s] for kind, s in zip(j.synthetic, sizes)])
    feats, logits = self.fwd["r"](torch.cat([x, x_s]))
    # float32 features, as jfesgan's trunk returns them whatever its compute dtype
    f_r, f_s = feats[:n].float(), feats[n:].float()
    if j.intra_normalise:
      f_r, f_s = F.normalize(f_r, dim=-1, eps=1e-6), F.normalize(f_s, dim=-1, eps=1e-6)
    ce_real, ce_syn = F.cross_entropy(logits[:n], y), F.cross_entropy(logits[n:], c_s)
    if j.intra_mode == "rdbp":
      intra = _RdbpIntraClass.apply(f_r, f_s, y, c_s, self.centres)
    elif j.intra_mode == "plain":
      f_all, y_all = torch.cat([f_r, f_s]), torch.cat([y, c_s])
      sums = torch.zeros_like(self.centres).index_add(0, y_all, f_all)
      centres = sums / torch.bincount(y_all, minlength=self.k).clamp(min=1)[:, None]
      intra = (0.5 * ((f_r - centres[y])**2).sum() / n
               + 0.5 * ((f_s - centres[c_s])**2).sum() / max(m, 1))
    else:
      intra = torch.zeros((), device=x.device)
    loss_r = ce_real + j.syn_weight * ce_syn + j.intra_weight * intra
    loss_g = j.beta * (ce_syn + j.intra_weight * intra)
    self.metrics.update({"r/loss": loss_r.detach(), "r/ce_real": ce_real.detach(),
                         "r/ce_syn": ce_syn.detach(), "r/intra": intra.detach(),
                         "r/acc_real": _acc(logits[:n].detach(), y),
                         "r/acc_syn": _acc(logits[n:].detach(), c_s)})
    if j.generator_terms:
      loss_g = loss_g + self._generator_total(g_terms)
    # Both gradients from the one forward pass, before either network moves.
    r_grads = self._grads("r", loss_r, retain_graph=j.update_generator)
    if j.update_generator:
      self._apply("g", self._grads("g", loss_g))
    self._apply("r", r_grads)
    with torch.no_grad():
      counts = torch.bincount(y, minlength=self.k).to(f_r.dtype)
      means = torch.zeros_like(self.centres).index_add_(0, y, f_r) / counts.clamp(min=1)[:, None]
      decayed = j.centre_decay * self.centres + (1 - j.centre_decay) * means
      self.centres = torch.where((counts > 0)[:, None], decayed, self.centres)

  def step(self, stage: str, batch) -> None:
    """One step of stage ``stage`` (a name of jfesgan.stages.PLAN, or ``fesgan_d`` / ``fesgan_g``
    for stage 1's two updates alone)."""
    with (contextlib.nullcontext() if self.autocast is None else
          torch.autocast(self.device.type, dtype=self.autocast)):
      getattr(self, f"{stage}_step")(batch)


def to_torch_batch(batch: dict[str, np.ndarray], device: str = "cpu",
                   channels_last: bool = False) -> dict[str, torch.Tensor]:
  """A jfesgan batch (NHWC float images, int labels) as the reference's (NCHW, int64; images
  stored channels-last with ``channels_last``)."""
  image = torch.from_numpy(np.ascontiguousarray(
      np.asarray(batch["image"], np.float32).transpose(0, 3, 1, 2))).to(device)
  if channels_last:
    image = image.contiguous(memory_format=torch.channels_last)
  return {"image": image,
          "label": torch.from_numpy(np.asarray(batch["label"], np.int64)).to(device),
          "subject": torch.from_numpy(np.asarray(batch["subject"], np.int64)).to(device)}


# --- parameters from jfesgan ------------------------------------------------------------------

def _t(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, np.float32))


def _conv(layer: nn.Conv2d, p) -> None:
  layer.weight.data = _t(p["kernel"]).permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
  if layer.bias is not None:
    layer.bias.data = _t(p["bias"])


def _conv_t(layer: nn.ConvTranspose2d, p) -> None:
  # jfesgan: out[2i - 1 + ky] += x[i] @ K[ky]; PyTorch: out[2i - 1 + ky] += x[i] * W[:, :, ky].
  layer.weight.data = _t(p["kernel"]).permute(2, 3, 0, 1).contiguous()  # (4,4,C,F) -> (C,F,4,4)
  if layer.bias is not None:
    layer.bias.data = _t(p["bias"])


def _dense(layer: nn.Linear, p, in_map: tuple[int, int, int] | None = None,
           out_map: tuple[int, int, int] | None = None) -> None:
  """A flax Dense (in, out) kernel; ``in_map``/``out_map`` = (s, s, c) when that side is an NHWC
  feature map flattened (flax) that PyTorch flattens as NCHW."""
  k = np.asarray(p["kernel"], np.float32)
  if in_map is not None:
    s1, s2, c = in_map
    k = k.reshape(s1, s2, c, -1).transpose(2, 0, 1, 3).reshape(s1 * s2 * c, -1)
  bias = np.asarray(p["bias"], np.float32) if "bias" in p else None
  if out_map is not None:
    s1, s2, c = out_map
    k = k.reshape(-1, s1, s2, c).transpose(0, 3, 1, 2).reshape(k.shape[0], -1)
    if bias is not None:
      bias = bias.reshape(s1, s2, c).transpose(2, 0, 1).reshape(-1)
  layer.weight.data = _t(k.T).contiguous()
  if layer.bias is not None:
    layer.bias.data = _t(bias)


def _convs(layers: nn.ModuleList, params, names: list[str]) -> None:
  for layer, name in zip(layers, names):
    _conv(layer, params[name])


def load_jax_params(ref: TorchReference, params: dict[str, Any]) -> None:
  """Copies jfesgan parameter trees ``{'g', 'dimg', 'dz', 'phi', 'r'}`` into ``ref``'s networks."""
  m = ref.config.model
  s = ref.config.data.image_size // 2**m.num_down
  top = _widths(m)[-1]
  with torch.no_grad():
    if "g" in params:
      enc, dec = params["g"]["encoder"], params["g"]["decoder"]
      gen = ref.nets["g"]
      _convs(gen.encoder.body.convs, enc, [f"Conv_{i}" for i in range(m.num_down)])
      _dense(gen.encoder.dense, enc["Dense_0"], in_map=(s, s, top))
      _dense(gen.decoder.dense, dec["Dense_0"], out_map=(s, s, top))
      for i in range(m.num_down):
        _dense(gen.decoder.films[i], dec[f"film{i}"])
        gn = dec[f"GroupNorm_{i}"]
        gen.decoder.norms[i].weight.data = _t(gn["scale"])
        gen.decoder.norms[i].bias.data = _t(gn["bias"])
      up_name = "BlurConvTranspose2x" if gen.decoder.blur else "ConvTranspose2x"
      for i, up in enumerate(gen.decoder.ups):
        _conv_t(up, dec[f"{up_name}_{i}"])
      _conv_t(gen.decoder.out, dec[f"{up_name}_{m.num_down - 1}"])
    if "dimg" in params:
      d, net = params["dimg"], ref.nets["dimg"]
      _convs(net.body.convs, d, [f"Conv_{i}" for i in range(m.num_down)])
      _dense(net.critic, d["critic"], in_map=(s, s, top))
      _dense(net.classifier, d["classifier"], in_map=(s, s, top))
    if "dz" in params:
      net, dz = ref.nets["dz"], params["dz"]
      for i, layer in enumerate(net.hidden):
        _dense(layer, dz[f"Dense_{i}"])
      _dense(net.out, dz[f"Dense_{len(net.hidden)}"])
    for name in ("phi", "r"):
      if name not in params:
        continue
      p, net = params[name], ref.nets[name]
      _convs(net.trunk.convs, p["trunk"], [f"Conv_{i}" for i in range(2 * m.num_down)])
      _dense(net.trunk.dense, p["trunk"]["Dense_0"], in_map=(s, s, top))
      if name == "phi":
        net.subject_directions.data = _t(p["subject_directions"])
      else:
        _dense(net.head, p["head"])


def forward_outputs(ref: TorchReference, x: np.ndarray, z: np.ndarray,
                    c: np.ndarray) -> dict[str, np.ndarray]:
  """Every network's output on NHWC images ``x``, codes ``z`` and expression codes ``c``, in
  jfesgan's layouts (for the equivalence check)."""
  with torch.no_grad():
    xt = torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))
    zt, ct = torch.from_numpy(np.asarray(z, np.float32)), torch.from_numpy(np.asarray(c, np.float32))
    nets = ref.nets
    out = {"encode": nets["g"].encoder(xt), "decode": nets["g"].decoder(zt, ct).permute(0, 2, 3, 1),
           "dimg_critic": nets["dimg"](xt)[0], "dimg_logits": nets["dimg"](xt)[1],
           "dz": nets["dz"](zt), "phi_embed": nets["phi"].embed(xt), "phi_logits": nets["phi"](xt)[1],
           "r_feat": nets["r"](xt)[0], "r_logits": nets["r"](xt)[1]}
    return {k: v.numpy() for k, v in out.items()}


def autocast_dtype(config) -> torch.dtype | None:
  """The ``torch.autocast`` dtype that mirrors ``config.model.dtype`` (None for float32), on
  either device: bfloat16 activations with float32 parameters, as jfesgan's bfloat16 runs."""
  return torch.bfloat16 if config.model.get("dtype", "float32") == "bfloat16" else None


def cuda_mode(config) -> torch.dtype | None:
  """Sets PyTorch up as the benchmark runs it on a GPU (TF32 matmuls and convolutions allowed, as
  XLA's default precision allows them in jfesgan; cuDNN autotuning) and returns the autocast
  dtype that mirrors ``config.model.dtype`` (None for float32)."""
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
  torch.backends.cudnn.benchmark = True
  return autocast_dtype(config)


def describe(device: str = "cpu", autocast: torch.dtype | None = None) -> str:
  """What runs the reference: version, device (threads on CPU), mode, dtype."""
  where = (f"{torch.get_num_threads()} threads" if device == "cpu" else
           f"{torch.cuda.get_device_name()}, TF32 "
           f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}")
  dtype = "float32" if autocast is None else f"autocast {str(autocast).replace('torch.', '')}"
  return f"torch {torch.__version__}, {where}, eager, {dtype}"


def trunk_layer_call(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int,
                     input_grad: bool) -> tuple[Any, float]:
  """One layer of the Phi / R trunk as the benchmark's per-layer profile times it: ReLU of the
  convolution (``kernel`` HWIO; padding 1, as :class:`ConvTrunk`) or, for a 2-D ``kernel``, of
  the dense layer, on the NHWC (or flat) input ``x``; forward and backward of the sum of squares,
  with the gradients of kernel and bias and, with ``input_grad``, of the input
  (``torch.autograd.grad``, nothing accumulated).  Channels-last tensors, as the ``tuned``
  variant runs.  Returns (call, the loss at these values)."""
  if kernel.ndim == 2:
    layer = nn.Linear(*kernel.shape)
    _dense(layer, {"kernel": kernel, "bias": bias})
    xt = _t(x)
  else:
    k = kernel.shape[0]
    layer = nn.Conv2d(kernel.shape[2], kernel.shape[3], k, stride, 1)
    _conv(layer, {"kernel": kernel, "bias": bias})
    layer = layer.to(memory_format=torch.channels_last)
    xt = _t(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
  xt.requires_grad_(input_grad)
  wrt = [layer.weight, layer.bias] + ([xt] if input_grad else [])

  def loss():
    return torch.square(F.relu(layer(xt))).sum()

  def call():
    return torch.autograd.grad(loss(), wrt)

  with torch.no_grad():
    value = float(loss())
  return call, value


def _probe_setup(variant: str = "eager"):
  """(reference, batch, device) of a probe process, as the benchmark runs PyTorch."""
  config = flags.FLAGS.config.copy_and_resolve_references()
  rng = np.random.default_rng(0)
  b, r, c = config.batch_size, config.data.image_size, config.data.channels
  options = VARIANTS[variant]
  ref, device = TorchReference(config, 7, 100, **options), flags.FLAGS.device
  # As the benchmark runs it (benchmark.torch_device): CUDA's settings there, and on either
  # device the autocast dtype of config.model.dtype (on a CPU, oneDNN's bf16 kernels).
  ref.to(device, cuda_mode(config) if device == "cuda" else autocast_dtype(config))
  batch = to_torch_batch({"image": rng.uniform(-1, 1, (b, r, r, c)),
                          "label": rng.integers(0, 7, b), "subject": rng.integers(0, 100, b)},
                         device, channels_last=options.get("channels_last", False))
  return ref, batch, device


def _probe_main(argv) -> None:
  """``python -m jfesgan.bench.torch_reference --config F (--memory_probe | --time_probe) STEP``:
  the benchmark's PyTorch probes, in a process that never imports JAX; prints one JSON line."""
  del argv
  f = flags.FLAGS
  if bool(f.memory_probe) == bool(f.time_probe):
    raise app.UsageError("give exactly one of --memory_probe and --time_probe")
  if f.time_probe:
    torch.set_num_threads(f.threads or timing.cpu_threads())
    ref, batch, device = _probe_setup(f.variant)
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None

    def call():
      ref.step(f.time_probe, batch)
      return ref.metrics

    out = timing.as_training_runs(call, lambda _: sync(), steps=f.steps, warmup=f.warmup)
    print(json.dumps({**out, "variant": f.variant, "threads": torch.get_num_threads(),
                      "torch": describe(device, ref.autocast).replace("eager", f.variant)}))
    return
  ref, batch, device = _probe_setup()
  if device == "cuda":  # the allocator's peak, as the JAX probe reads its allocator's
    def step():
      ref.step(f.memory_probe, batch)
      torch.cuda.synchronize()
    print(json.dumps(probe(step, lambda: torch.cuda.max_memory_allocated() / 2**20,
                           resettable=False)))
  else:
    print(json.dumps(probe(lambda: ref.step(f.memory_probe, batch))))


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", "configs/joint.py", "Configuration file.")
  flags.DEFINE_string("memory_probe", "", "The step whose memory to measure.")
  flags.DEFINE_string("time_probe", "", "The step to time as training runs it.")
  flags.DEFINE_enum("variant", "eager", list(VARIANTS), "How PyTorch runs (VARIANTS).")
  flags.DEFINE_integer("steps", 10, "Back-to-back steps per timed round.")
  flags.DEFINE_integer("warmup", 3, "Warm-up steps (the first compiles).")
  flags.DEFINE_integer("threads", 0, "PyTorch's threads (0: the CPUs this process may use).")
  flags.DEFINE_enum("device", "cpu", ["cpu", "cuda"], "Where the reference runs.")
  app.run(_probe_main)
