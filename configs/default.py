"""Default configuration: stages ``phi``, ``fesgan`` and ``real`` on the embedded procedural faces,
sized for a laptop.

Every field and its comment live in ``jfesgan/defaults.py``: the library reads the defaults too
(to tell a field added to the code since a run was saved from a changed one), and the library
never imports ``configs/``.  Variants import this file and override a few fields.
"""

from jfesgan.defaults import augment, get_config, optimizer, tied  # noqa: F401  (re-exported)
