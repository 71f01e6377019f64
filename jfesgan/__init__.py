"""jfesgan: joint facial-expression synthesis and recognition (Yan et al., 2020) in JAX/Flax.

Importing the package sets one XLA:CPU default before JAX starts its backends: XLA's YNNPACK
library fusions off (``--xla_cpu_experimental_ynn_fusion_type=``, an empty set), so that
convolutions and their gradients run on XLA:CPU's Eigen kernels.  Measured on 2 CPU cores
(``jfesgan benchmark``), the YNNPACK convolutions' weight gradients are 2-3x slower
than Eigen's on this project's layers and its whole train steps 1.0-1.9x slower, on every
CPU measured: an AMD EPYC with AVX2, an Intel Xeon with AVX-512 (there 1.0-2.0x slower per step)
and an AMD EPYC with AVX-512 (1.0-1.6x; docs/performance.md), so the choice does not depend on the
machine.  On both AVX-512 machines XLA's oneDNN fusions were measured too (and 512-bit vectors on
the Xeon) and left the steps within noise or slower.  The flag
only concerns XLA:CPU (GPU and TPU compilers ignore it) and is left alone when ``XLA_FLAGS``
already names it, ``JFESGAN_XLA_DEFAULTS=0``, or jaxlib predates the flag (XLA refuses unknown
flags; jaxlib 0.8.0 lacks it, 0.9.0 to 0.11.2 have it).  Importing jfesgan after JAX has started
its backends leaves XLA's own default in place.
"""

import os as _os

_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_YNN_FLAG_SINCE = (0, 9)  # first jaxlib release whose XLA knows the flag


def _jaxlib_version() -> tuple[int, ...]:
  from importlib import metadata
  try:
    return tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return ()


def _set_xla_defaults() -> None:
  flags = _os.environ.get("XLA_FLAGS", "")
  if (_os.environ.get("JFESGAN_XLA_DEFAULTS", "1") == "0" or _YNN_FLAG in flags
      or _jaxlib_version() < _YNN_FLAG_SINCE):
    return
  _os.environ["XLA_FLAGS"] = f"{flags} {_YNN_FLAG}=".strip()


_set_xla_defaults()
