"""Entry point: ``python -m jfesgan.main --config configs/joint.py [--workdir DIR] [--start_from DIR]``."""

from __future__ import annotations

import datetime
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jfesgan import train
from jfesgan.evaluation.summary import format_summary
from jfesgan.run import faults, host, metrics
from jfesgan.run.flags import parse_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/joint.py", "Configuration file.",
                                lock_config=True)
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host runs).")
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and samples go (resumed if present); "
                    "default runs/<config name>-<time>.")
flags.DEFINE_string("compilation_cache", "~/.cache/jfesgan/xla", "Directory of the persistent "
                    "XLA compilation cache ('' = off): re-runs and resumes skip compiling.")
flags.DEFINE_bool("accept_config_changes", False, "Resume stages whose checkpoints were saved "
                  "under another configuration (refused by default, naming the fields).")
flags.DEFINE_string("start_from", None, "Another workdir whose finished stages (trained under the "
                    "same config fields) this run starts from instead of training them again.")


def initialize_distributed() -> None:
  """``jax.distributed.initialize``: from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  JAX_PROCESS_ID when they are set (any cluster, or several processes on one machine), else
  discovered (Cloud TPU, SLURM).  CPU processes exchange collectives over gloo."""
  env = {k: os.environ.get(k) for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                                         "JAX_PROCESS_ID")}
  if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if all(env.values()):
    jax.distributed.initialize(coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                               num_processes=int(env["JAX_NUM_PROCESSES"]),
                               process_id=int(env["JAX_PROCESS_ID"]))
  else:
    jax.distributed.initialize()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.distributed:
    initialize_distributed()
  host.enable_compilation_cache(FLAGS.compilation_cache)
  logging.set_verbosity(logging.INFO)
  metrics.quiet_orbax_logs()
  workdir = FLAGS.workdir
  if workdir is None:
    name = os.path.splitext(os.path.basename(FLAGS["config"].config_filename))[0]
    workdir = os.path.join("runs", f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
  logging.info("JAX %s on %s; workdir %s", jax.__version__, jax.default_backend(), workdir)
  try:
    summary = train.train_and_evaluate(FLAGS.config, workdir, start_from=FLAGS.start_from,
                                       accept_config_changes=FLAGS.accept_config_changes)
  except (faults.Stopped, faults.NonFiniteError) as e:
    # One line saying what happened and where; the status says which (README: exit statuses).
    logging.error("%s", e)
    print(f"jfesgan: {e}", file=sys.stderr, flush=True)
    sys.exit(e.status)
  except Exception as e:  # pylint: disable=broad-except
    # The traceback for whoever debugs, then one last line that says what happened (a full disk,
    # a bad file, a bad field), not the noise of threads shutting down after it.
    faults.silence_background_threads()
    logging.exception("run failed")
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(2, faults.fail_line(e).encode())  # one write: no thread can tear it
    os._exit(faults.EXIT_FAILED)  # pylint: disable=protected-access
  print(format_summary(summary), flush=True)


def run() -> None:
  """``python -m jfesgan.main`` and ``jfesgan train``."""
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
