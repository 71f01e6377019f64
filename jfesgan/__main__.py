"""``python -m jfesgan <command>``: the same as the ``jfesgan`` console script."""

from jfesgan.cli import main

main()
