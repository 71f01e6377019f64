"""Command-line parsing and logging shared by the programs (main, the tools, crossval)."""

from __future__ import annotations

import functools
import re
import sys

from absl import flags, logging

from jfesgan.run import metrics


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, where a bad ``--config.<field>`` override (a field the config does not
  have, a value of the wrong type) ends the program with one line naming the flag, not a
  traceback from inside ml_collections."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"jfesgan: {e}")
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    raw = str(e.args[0] if e.args else e)
    found = re.search(r"'\\?'?([A-Za-z0-9_]+)\\?'", raw)
    name = found.group(1) if found else ""
    hint = re.search(r'Did you mean "[^"]+" instead of "[^"]+"\?', raw)
    culprit = [a for a in argv[1:] if a.startswith("--config.") and name
               and name in a.split("=")[0].split(".")]
    where = culprit[0].split("=")[0] if culprit else "a --config override"
    sys.exit(f"jfesgan: {where}: the config has no field {name!r} there"
             + (f" ({hint.group(0)})" if hint else f" ({type(e).__name__}: {raw[:200]})"))


def quiet_tool() -> None:
  """Logging for the tools (predict, export, synthesize, rejudge): warnings only, Orbax's too."""
  logging.set_verbosity(logging.WARNING)
  metrics.quiet_orbax_logs()


def one_line_errors(main):
  """``main`` of a tool, where a user's mistake (a missing or damaged run, a bad file, a bad
  value: ``ValueError``, ``OSError``) ends the program with one line naming it instead of a
  traceback.  Anything else is a bug and keeps its traceback."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except (ValueError, OSError) as e:
      sys.exit(f"jfesgan: {e}")

  return wrapped
