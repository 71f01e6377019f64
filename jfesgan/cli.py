"""``jfesgan <command> [flags]``: one entry point for every program of the project.

``jfesgan train --config configs/joint.py`` is ``python -m jfesgan.main --config
configs/joint.py``; each other command is the module of the same name under ``jfesgan/tools``,
``jfesgan/research`` or ``jfesgan/bench`` (``python -m jfesgan.tools.predict`` works too), with
the same flags (``jfesgan <command> --help``).  The command's module is imported only when it is
asked for: each defines its own flags, and ``benchmark`` alone needs PyTorch for ``--torch``.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module with a ``run()`` that parses the flags and runs it, one line of help)
COMMANDS = {
    "train": ("jfesgan.main", "train the stages of a config and evaluate (the main job)"),
    "crossval": ("jfesgan.research.crossval",
                 "subject-independent cross-validation and the ablation table"),
    "compare": ("jfesgan.research.compare", "recipes compared paired, fold by fold and seed by seed"),
    "rejudge": ("jfesgan.research.rejudge", "a finished run's generators scored by another judge"),
    "generators": ("jfesgan.research.generators",
                   "generator recipes compared on their synthesis scores, paired by seed"),
    "synthesize": ("jfesgan.tools.synthesize",
                   "faces with other expressions, new identities, interpolations"),
    "predict": ("jfesgan.tools.predict", "a trained recogniser applied to face images (CSV)"),
    "evaluate": ("jfesgan.tools.evaluate", "a trained recogniser tested on another database"),
    "export": ("jfesgan.tools.export", "a trained recogniser exported for serving without jfesgan"),
    "report": ("jfesgan.tools.report", "(re)write a run's self-contained HTML report"),
    "demo": ("jfesgan.tools.demo", "a local web page: a photo's expression, re-drawn faces, new people"),
    "benchmark": ("jfesgan.bench.benchmark", "speed and memory of the train steps (vs PyTorch)"),
}


def usage() -> str:
  """The list of commands."""
  width = max(map(len, COMMANDS))
  lines = ["usage: jfesgan <command> [flags]   (jfesgan <command> --help for its flags)", "",
           "commands:"]
  lines += [f"  {name:{width}s}  {text}" for name, (_, text) in COMMANDS.items()]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  """Runs ``argv[1]``'s command with the rest of ``argv`` as its flags (the console script)."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(usage())
    sys.exit(0 if len(argv) >= 2 else 2)
  name = argv[1]
  if name not in COMMANDS:
    sys.exit(f"jfesgan: unknown command {name!r}\n\n{usage()}")
  module = importlib.import_module(COMMANDS[name][0])
  sys.argv = [f"jfesgan {name}"] + argv[2:]
  module.run()


if __name__ == "__main__":
  main()
