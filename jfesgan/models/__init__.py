"""The networks of jfesgan, one module per file, built together from a config."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jfesgan.models.common import check_resolution
from jfesgan.models.discriminators import ImageDiscriminator, LatentDiscriminator
from jfesgan.models.generator import EDITS, Decoder, Encoder, Generator
from jfesgan.models.identity import IdentityNet
from jfesgan.models.layers import UPSAMPLERS, Conv, ConvTranspose2x, ResizeConv2x
from jfesgan.models.recogniser import R_ARCHS, Recogniser
from jfesgan.models.residual import ResidualTrunk
from jfesgan.models.trunk import ConvTrunk

__all__ = ["EDITS", "UPSAMPLERS", "Conv", "ConvTranspose2x", "ConvTrunk", "Decoder", "Encoder", "Generator",
           "IdentityNet", "ImageDiscriminator", "LatentDiscriminator", "Models", "R_ARCHS",
           "Recogniser", "ResidualTrunk", "ResizeConv2x", "build_models", "r_arch"]


@dataclasses.dataclass(frozen=True)
class Models:
  """The modules of every stage, keyed by the stage names used throughout (g, dimg, dz, phi, r)."""

  g: Generator
  dimg: ImageDiscriminator
  dz: LatentDiscriminator
  phi: IdentityNet
  r: Recogniser
  image_size: int
  channels: int
  num_classes: int
  latent_dim: int


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config):
  """The activations' dtype, ``config.model.dtype`` ("float32" or "bfloat16")."""
  name = config.model.get("dtype", "float32")
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"config.model.dtype={name!r} must be one of {tuple(COMPUTE_DTYPES)}")
  return COMPUTE_DTYPES[name]


def build_models(config, num_classes: int, num_subjects: int) -> Models:
  """All networks for ``config`` (sections ``data`` and ``model``)."""
  m, d = config.model, config.data
  dtype = compute_dtype(config)
  common = dict(width=m.width, max_width=m.max_width, num_down=m.num_down, impl=m.conv_impl,
                dtype=dtype)
  return Models(
      g=Generator(image_size=d.image_size, channels=d.channels, latent_dim=m.latent_dim,
                  **{**common, "width": int(m.get("g_width", 0)) or m.width},
                  depth=int(m.get("g_depth", 0)), upsample=m.get("g_upsample", "transpose"),
                  edit=edit_mode(m.get("g_edit", "none")), num_classes=num_classes),
      dimg=ImageDiscriminator(num_classes=num_classes, **common),
      dz=LatentDiscriminator(hidden=tuple(m.dz_hidden), dtype=dtype,
                             num_classes=num_classes if code_expr(config) else 0),
      phi=IdentityNet(num_subjects=num_subjects, embed_dim=m.embed_dim, **common),
      r=Recogniser(num_classes=num_classes, embed_dim=m.embed_dim, arch=r_arch(config), **common),
      image_size=d.image_size, channels=d.channels, num_classes=num_classes,
      latent_dim=m.latent_dim)


def code_expr(config) -> bool:
  """Whether D_z holds a classifier of the code's expression: the generator's ``code_expr`` term
  is on (``config.fesgan.code_expr_weight`` > 0)."""
  return "fesgan" in config and float(config.fesgan.get("code_expr_weight", 0.0)) > 0


def r_arch(config) -> str:
  """R's architecture family, ``config.model.r_arch`` (runs written before it existed: "trunk")."""
  return config.model.get("r_arch", "trunk")


def edit_mode(value) -> str:
  """``model.g_edit`` as one of EDITS; runs written before it named modes say True for "mask"
  and False for "none"."""
  if isinstance(value, bool):
    return "mask" if value else "none"
  return value


def check_config(config, need) -> list[str]:
  """Checks the ``model`` section (and the image size it must divide) for
  :func:`jfesgan.validate.validate`: ``need(ok, field, value, rule)`` records a problem; returns
  the problems that are not of that form (the resolution's)."""
  m = config.model
  need(m.get("dtype", "float32") in COMPUTE_DTYPES, "model.dtype", m.get("dtype"),
       f"must be one of {tuple(COMPUTE_DTYPES)}")
  need(m.g_width >= 0, "model.g_width", m.g_width, "must be >= 0 (0: model.width)")
  need(m.g_depth >= 0, "model.g_depth", m.g_depth, "must be >= 0")
  need(edit_mode(m.g_edit) in EDITS, "model.g_edit", m.g_edit, f"must be one of {EDITS}")
  need(r_arch(config) in R_ARCHS, "model.r_arch", m.get("r_arch"), f"must be one of {R_ARCHS}")
  need(r_arch(config) == "trunk" or not config.joint.get("init_r_from_phi", False),
       "joint.init_r_from_phi", True, "needs model.r_arch='trunk' (R takes Phi's trunk, a ConvTrunk)")
  need(m.g_upsample in UPSAMPLERS, "model.g_upsample", m.g_upsample,
       f"must be one of {tuple(UPSAMPLERS)}")
  try:
    check_resolution(config.data.image_size, m.num_down)
  except ValueError as e:
    return [str(e)]
  return []
