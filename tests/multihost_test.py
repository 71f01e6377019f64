"""Two processes on this machine (jax.distributed over the loopback address, 2 CPU devices each)
train what one process with 4 devices trains, write once, and resume."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jfesgan.run import checkpointing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The stages the two processes train: the GAN's (every cross-process reduction of a stage-1
# step, the gradient penalty's included) and Phi's; the joint step's sharding is checked on 4
# devices in joint_test.py.  All four would compile every step twice more (~2 CPU-minutes).
STAGES = ("phi", "fesgan")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _two_processes(workdir, data_dir, tmp_path, cache, xla_flags):
  """Runs the main job as 2 processes, the way launch/multihost.sh documents; returns the logs."""
  port = _free_port()
  procs = []
  for pid in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=xla_flags(2),
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(pid))
    log = open(tmp_path / f"p{pid}.log", "w")
    procs.append((subprocess.Popen(
        [sys.executable, "-m", "jfesgan.main", "--config", "configs/tiny.py", "--distributed",
         "--workdir", workdir, f"--config.data.data_dir={data_dir}",
         f"--config.stages={','.join(STAGES)}",
         f"--compilation_cache={cache}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
  outs = []
  for p, log in procs:
    p.wait(timeout=900)
    log.close()
    outs.append((p.returncode, open(log.name).read()))
  for rc, text in outs:
    assert rc == 0, text[-3000:]
  return [text for _, text in outs]


@pytest.mark.slow
def test_two_processes_train_what_one_does(tiny_run, tmp_path, compilation_cache,
                                          subprocess_xla_flags):
  # One process with 4 devices: the shared tiny run (the same global mesh size and batch).
  cfg, one = tiny_run
  assert jax.device_count() == 4
  data_dir = cfg.data.data_dir
  two = str(tmp_path / "two")
  logs = _two_processes(two, data_dir, tmp_path, compilation_cache, subprocess_xla_flags)
  assert "devices: 4 x" in logs[0] and "(2 processes)" in logs[0]

  # The same parameters, stage by stage.  Cross-process all-reduces sum in another order, and
  # Adam divides each gradient by its own running magnitude, so where a gradient is as small as
  # that rounding noise the update moves by a visible fraction of the learning rate (seen: 1.3e-5
  # on one of 4,096 weights of Phi; 2.5e-4 on one of 8 in stage 1, whose GAN amplifies it): each
  # tensor within atol 5e-5 but for at most one weight in a thousand (at least one), and every
  # weight within 1e-3; a wrong shard or a missed reduction changes whole tensors, by ~1e-3.
  for name in STAGES:
    a, b = (checkpointing.StageCheckpointer(d, name) for d in (one, two))
    assert a.latest_step() == b.latest_step() == int(cfg[name].steps)
    ta, tb = a.restore_raw(a.latest_step()), b.restore_raw(b.latest_step())
    a.close()
    b.close()
    la, lb = jax.tree.leaves(ta), jax.tree.leaves(tb)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
      x, y = np.asarray(x), np.asarray(y)
      off = ~np.isclose(x, y, rtol=1e-4, atol=5e-5)
      worst = float(np.max(np.abs(x - y))) if x.size else 0.0
      assert off.sum() <= max(1, off.size // 1000) and worst < 1e-3, (
          name, x.shape, int(off.sum()), worst)

  # Process 0 alone wrote the logs and report: one record per (stage, step), as in one process.
  def records(d):
    with open(os.path.join(d, "metrics.jsonl")) as f:
      return sorted((r["stage"], r["step"]) for r in map(json.loads, f) if r["stage"] in STAGES)
  assert records(two) == records(one)
  assert os.path.isfile(os.path.join(two, "report.html"))
  assert not os.path.exists(os.path.join(two, ".lock"))

  # Both processes resume from the checkpoints written once: nothing trains again.
  logs = _two_processes(two, data_dir, tmp_path, compilation_cache, subprocess_xla_flags)
  for text in logs:
    assert f"stage fesgan: restored at step {cfg.fesgan.steps}, already done" in text
  assert records(two) == records(one)
