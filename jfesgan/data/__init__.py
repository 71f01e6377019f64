"""Data: the embedded procedural faces, the TFDS builders of the real databases, the input
pipeline, subject-independent splits, and expression class names across databases."""
