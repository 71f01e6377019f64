"""``jfesgan report --workdir W``: (re)writes ``W/report.html``, the self-contained HTML page of a
run (:mod:`jfesgan.evaluation.html_report`; the main job writes it at the end of every run)."""

from __future__ import annotations

import os

from absl import app, flags

from jfesgan.evaluation import html_report
from jfesgan.run.flags import one_line_errors, parse_flags


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  print(html_report.write(os.path.abspath(flags.FLAGS.workdir)), flush=True)


def run() -> None:
  """``python -m jfesgan.tools.report`` and ``jfesgan report``."""
  flags.DEFINE_string("workdir", None, "Workdir of a finished run.", required=True)
  app.run(one_line_errors(main), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
