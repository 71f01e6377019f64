"""Expression class names across databases: one canonical spelling for each expression, so that
datasets, recognisers and judges trained on different databases are matched by name."""

from __future__ import annotations

import numpy as np

# Spellings of the same expression across databases -> one canonical name.
SYNONYMS = {"angry": "anger", "sad": "sadness", "happiness": "happy", "surprised": "surprise",
            "disgusted": "disgust", "fearful": "fear", "afraid": "fear", "scared": "fear"}


def canonical(name: str) -> str:
  """The canonical spelling of an expression name."""
  name = name.strip().lower()
  return SYNONYMS.get(name, name)


def class_map(source, target) -> np.ndarray:
  """For each name in ``target``, the index in ``source`` of the same expression, or -1."""
  index = {canonical(n): i for i, n in enumerate(source)}
  return np.array([index.get(canonical(n), -1) for n in target], np.int64)
