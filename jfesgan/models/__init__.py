"""The networks of jfesgan, one module per file, built together from a config."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jfesgan.models.discriminators import ImageDiscriminator, LatentDiscriminator
from jfesgan.models.generator import Decoder, Encoder, Generator
from jfesgan.models.identity import IdentityNet
from jfesgan.models.layers import UPSAMPLERS, Conv, ConvTranspose2x, ResizeConv2x
from jfesgan.models.recognizer import Recognizer
from jfesgan.models.trunk import ConvTrunk

__all__ = ["UPSAMPLERS", "Conv", "ConvTranspose2x", "ConvTrunk", "Decoder", "Encoder", "Generator",
           "IdentityNet", "ImageDiscriminator", "LatentDiscriminator", "Models", "Recognizer",
           "ResizeConv2x", "build_models"]


@dataclasses.dataclass(frozen=True)
class Models:
  """The modules of every stage, keyed by the stage names used throughout (g, dimg, dz, phi, r)."""

  g: Generator
  dimg: ImageDiscriminator
  dz: LatentDiscriminator
  phi: IdentityNet
  r: Recognizer
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
                  depth=int(m.get("g_depth", 0)), upsample=m.get("g_upsample", "transpose")),
      dimg=ImageDiscriminator(num_classes=num_classes, **common),
      dz=LatentDiscriminator(hidden=tuple(m.dz_hidden), dtype=dtype),
      phi=IdentityNet(num_subjects=num_subjects, embed_dim=m.embed_dim, **common),
      r=Recognizer(num_classes=num_classes, embed_dim=m.embed_dim, **common),
      image_size=d.image_size, channels=d.channels, num_classes=num_classes,
      latent_dim=m.latent_dim)
