"""The user commands, one module per command: ``jfesgan synthesize | predict | evaluate | export |
report`` (:mod:`jfesgan.cli`)."""
