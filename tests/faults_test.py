"""Faults: preemption (SIGTERM), corrupt checkpoints, non-finite values, a locked workdir,
re-run metric records."""

import glob
import json
import os
import re
import signal
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jfesgan import parallel, stages, train
from jfesgan.data import pipeline
from jfesgan.models import build_models
from jfesgan.run import checkpointing, faults
from jfesgan.run import metrics as metrics_lib
from jfesgan.run import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup(tiny_config, tmp_path, **phi):
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(tmp_path / "tfds")
  cfg.checkpoint_every = 100
  cfg.log_every = 1
  for k, v in phi.items():
    if k == "lr":
      cfg.phi.optimizer.lr = v
    else:
      cfg.phi[k] = v
  data, _ = pipeline.train_test(cfg.data)
  models = build_models(cfg, data.num_classes, num_subjects=len(np.unique(data.subject)))
  return cfg, stages.Context(config=cfg, models=models, train=data)


def _run_phi(ctx, workdir, **kw):
  writer = metrics_lib.MetricWriter(workdir)
  try:
    return train.run_stage(stages.PHI, ctx, {}, mesh=parallel.make_mesh(), workdir=workdir,
                           writer=writer, **kw)[0]
  finally:
    writer.close()


def _records(workdir, stage="phi"):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r["step"] for r in map(json.loads, f) if r["stage"] == stage]


@pytest.mark.slow
def test_sigterm_saves_stops_and_resumes_exactly(tiny_config, tmp_path):
  cfg, ctx = _setup(tiny_config, tmp_path, steps=6)
  whole = _run_phi(ctx, str(tmp_path / "whole"))

  cut = str(tmp_path / "cut")

  def preempt_at_3(step, state):
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)  # a real signal, caught by the handler

  with faults.Preemption() as pre:
    with pytest.raises(faults.Stopped, match=r"stage phi: stopped by SIGTERM at step 3 of 6; "
                       r"saved .*checkpoints/phi/3\. Re-run") as e:
      _run_phi(ctx, cut, on_step=preempt_at_3, preemption=pre)
  assert e.value.status == faults.EXIT_PREEMPTED == 143
  assert checkpointing.latest_step(cut, "phi") == 3  # saved although checkpoint_every is 100
  # Records of steps 4.. that a crash could have left are replaced, not duplicated, on resume.
  with open(os.path.join(cut, "metrics.jsonl"), "a") as f:
    f.write(json.dumps({"stage": "phi", "step": 4, "phi/loss": 0.0}) + "\n")
  resumed = _run_phi(ctx, cut)
  chex.assert_trees_all_equal(jax.tree.leaves(jax.device_get(resumed)),
                              jax.tree.leaves(jax.device_get(whole)))
  assert _records(cut) == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_stage_one_resumes_exactly_before_the_discriminators_start(tiny_config, tmp_path):
  """``fesgan.warmup.d_steps``: the iterations before the discriminators start leave D_img and D_z
  alone but count in their step counters (FesganStates.step), so a run stopped there resumes at
  the iteration it stopped at, and ends to the bit where the uninterrupted run does."""
  cfg, ctx = _setup(tiny_config, tmp_path, steps=2)
  cfg.fesgan.steps, cfg.fesgan.n_critic = 4, 1
  cfg.fesgan.warmup.steps, cfg.fesgan.warmup.d_steps = 3, 1  # D from iteration 2
  phi = _run_phi(ctx, str(tmp_path / "phi"))

  def run_fesgan(workdir, **kw):
    writer = metrics_lib.MetricWriter(workdir)
    try:
      # A copy of Phi's state for each run: stage 1 takes it into its own, which its steps donate.
      return train.run_stage(stages.FESGAN, ctx, {"phi": jax.tree.map(jnp.copy, phi)},
                             mesh=parallel.make_mesh(),
                             workdir=workdir, writer=writer, **kw)[0]
    finally:
      writer.close()

  whole = run_fesgan(str(tmp_path / "whole"))
  assert int(whole.step) == 4 and int(whole.dimg.opt_state[0].count) == 2  # D updated twice
  cut = str(tmp_path / "cut")

  def preempt_at_1(step, state):
    if step == 1:
      os.kill(os.getpid(), signal.SIGTERM)

  with faults.Preemption() as pre:
    with pytest.raises(faults.Stopped, match=r"stage fesgan: stopped by SIGTERM at step 1 of 4"):
      run_fesgan(cut, on_step=preempt_at_1, preemption=pre)
  assert checkpointing.latest_step(cut, "fesgan") == 1
  resumed = run_fesgan(cut)
  chex.assert_trees_all_equal(jax.tree.leaves(jax.device_get(resumed)),
                              jax.tree.leaves(jax.device_get(whole)))
  assert _records(cut, "fesgan") == [1, 2, 3, 4]


@pytest.mark.slow
def test_sigterm_to_the_process_exits_143_with_one_line(tiny_config, tmp_path,
                                                        compilation_cache, subprocess_xla_flags):
  """The real entry point: SIGTERM mid-stage -> checkpoint, one line, status 143."""
  workdir = str(tmp_path / "run")
  cmd = [sys.executable, "-m", "jfesgan.main", "--config", "configs/tiny.py", "--workdir", workdir,
         f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.stages=phi",
         "--config.phi.steps=100000", "--config.checkpoint_every=100000",
         f"--compilation_cache={compilation_cache}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=subprocess_xla_flags(1))
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  # Wait until the stage is running (its first metric record), then preempt.
  path = os.path.join(workdir, "metrics.jsonl")
  for _ in range(600):
    if os.path.exists(path) and os.path.getsize(path) > 0:
      break
    if proc.poll() is not None:
      pytest.fail(proc.stderr.read())
    import time
    time.sleep(0.25)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err[-2000:]
  assert "jfesgan: stage phi: stopped by SIGTERM at step" in err
  assert checkpointing.latest_step(workdir, "phi") is not None
  assert not os.path.exists(os.path.join(workdir, ".lock"))


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tiny_config, tmp_path, caplog):
  cfg, ctx = _setup(tiny_config, tmp_path, steps=2)
  cfg.checkpoint_every = 1
  work = str(tmp_path / "run")
  _run_phi(ctx, work)
  ckpt_dir = os.path.join(work, "checkpoints", "phi")
  step1 = _restore(ctx, work, 1)
  # Damage step 2: truncate every data file in it.
  for p in glob.glob(os.path.join(ckpt_dir, "2", "**", "*"), recursive=True):
    if os.path.isfile(p) and "metadata" not in os.path.basename(p).lower():
      open(p, "w").close()
  c = checkpointing.StageCheckpointer(work, "phi")
  state = c.restore_or_create(lambda: stages.PHI.create(ctx, {}),
                              jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  c.close()
  assert int(state.step) == 1
  chex.assert_trees_all_equal(jax.tree.leaves(jax.device_get(state.params)),
                              jax.tree.leaves(jax.device_get(step1.params)))
  assert os.path.isdir(os.path.join(ckpt_dir, "2.corrupt"))  # kept, out of the way
  assert any("checkpoints/phi/2 cannot be restored" in r.getMessage() for r in caplog.records)
  # The resumed stage then saves step 2 again over a clean slot.
  _run_phi(ctx, work)
  assert checkpointing.latest_step(work, "phi") == 2
  # Nothing restorable at all: an error naming the folder, never fresh weights.
  for p in glob.glob(os.path.join(ckpt_dir, "[0-9]")):
    for f in glob.glob(os.path.join(p, "**", "*"), recursive=True):
      if os.path.isfile(f):
        open(f, "w").close()
  with pytest.raises(RuntimeError, match="no checkpoint in .*checkpoints/phi can be restored"):
    _restore(ctx, work, None)
  with pytest.raises(FileNotFoundError, match="no checkpoint in .*nowhere"):
    checkpointing.StageCheckpointer(str(tmp_path / "nowhere"), "phi").restore_or_create(
        lambda: stages.PHI.create(ctx, {}), jax.sharding.SingleDeviceSharding(jax.devices()[0]),
        require=True)


def _restore(ctx, work, step):
  c = checkpointing.StageCheckpointer(work, "phi")
  try:
    if step is None:
      return c.restore_or_create(lambda: stages.PHI.create(ctx, {}),
                                 jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    import orbax.checkpoint as ocp
    abstract = jax.eval_shape(lambda: stages.PHI.create(ctx, {}))
    return c.manager.restore(step, args=ocp.args.StandardRestore(abstract))
  finally:
    c.close()


@pytest.mark.slow
def test_non_finite_stops_the_stage_and_keeps_the_good_checkpoint(tiny_config, tmp_path):
  cfg, ctx = _setup(tiny_config, tmp_path, steps=2)
  cfg.checkpoint_every = 1
  work = str(tmp_path / "run")
  _run_phi(ctx, work)
  good = _restore(ctx, work, 2)
  # Resumed with more steps and a learning rate that blows up.
  cfg.phi.steps = 8
  cfg.phi.optimizer.lr = 1e30
  with pytest.raises(faults.NonFiniteError, match=r"stage phi: non-finite values .* by step \d+ "
                     r"in \[.*phi/"):
    _run_phi(ctx, work, accept_config_changes=True)
  steps = checkpointing.StageCheckpointer(work, "phi")
  saved = sorted(steps.manager.all_steps())
  steps.close()
  assert 2 in saved  # the last good checkpoint survives the keep-2 policy
  for s in saved:
    state = _restore(ctx, work, s)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params)), s
  np.testing.assert_array_equal(jax.tree.leaves(_restore(ctx, work, 2).params)[0],
                                jax.tree.leaves(good.params)[0])


def test_finite_guard_names_the_first_bad_chunk_and_terms():
  g = faults.FiniteGuard("fesgan")
  g.update({"g/loss": jax.numpy.float32(1.0), "d/loss": jax.numpy.float32(2.0)}, 5)
  g.check()
  g.update({"g/loss": jax.numpy.float32(np.nan), "d/loss": jax.numpy.float32(2.0)}, 10)
  g.update({"g/loss": jax.numpy.float32(np.nan), "d/loss": jax.numpy.float32(np.inf)}, 15)
  with pytest.raises(faults.NonFiniteError, match=r"stage fesgan: .* by step 10 in "
                     r"\['d/loss', 'g/loss'\]"):
    g.check()
  # Metrics that join later (stage 1's discriminators after the generator's warm-up) are checked
  # as well, and a chunk without one of the earlier ones is fine.
  g = faults.FiniteGuard("fesgan")
  g.update({"g/rec": jax.numpy.float32(1.0)}, 50)
  g.update({"g/rec": jax.numpy.float32(1.0), "dimg/gp": jax.numpy.float32(2.0)}, 100)
  g.update({"dimg/gp": jax.numpy.float32(3.0)}, 150)
  g.check()
  g.update({"g/rec": jax.numpy.float32(1.0), "dimg/gp": jax.numpy.float32(np.inf)}, 200)
  with pytest.raises(faults.NonFiniteError, match=r"by step 200 in \['dimg/gp'\]"):
    g.check()


@pytest.mark.slow  # starts a process (one that is gone, for its pid)
def test_one_run_per_workdir(tiny_config, tmp_path):
  work = tmp_path / "run"
  work.mkdir()
  lock = work / ".lock"
  import socket
  lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(tmp_path / "tfds")
  with pytest.raises(RuntimeError, match=rf"in use by another run \(host .*, pid {os.getpid()}"):
    train.train_and_evaluate(cfg, str(work))
  assert lock.exists()  # the other run's lock is left alone
  # A lock whose process is gone is taken over (and released at the end).
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
  with faults.WorkdirLock(str(work)) as held:
    assert held.taken_over == {"host": socket.gethostname(), "pid": dead.pid}
    assert json.loads(lock.read_text())["pid"] == os.getpid()
  assert not lock.exists()


def test_drop_after_keeps_other_stages_and_cut_lines(tmp_path):
  w = metrics_lib.MetricWriter(str(tmp_path))
  for stage, step in (("phi", 1), ("phi", 2), ("fesgan", 3), ("phi", 3)):
    w.scalars(step, {"x": 1.0}, stage)
  with open(w.jsonl_path, "a") as f:
    f.write('{"stage": "phi", "st')  # a line cut short by a crash
  assert w.drop_after("phi", 1) == 2
  with open(w.jsonl_path) as f:
    lines = f.read().splitlines()
  assert [json.loads(ln)["step"] for ln in lines[:-1]] == [1, 3] and lines[-1].endswith('"st')
  w.close()


@pytest.mark.slow
def test_resume_under_another_config_is_refused_naming_the_fields(tiny_config, tmp_path):
  cfg, ctx = _setup(tiny_config, tmp_path, steps=2)
  work = str(tmp_path / "run")
  _run_phi(ctx, work)
  cfg.phi.optimizer.lr = 0.5
  cfg.model.embed_dim = 8
  with pytest.raises(ValueError, match=r"stage phi: .*checkpoints/phi was saved under another "
                     r"configuration \(differs in \['model.embed_dim', 'phi.optimizer.lr'\]\).*"
                     r"--accept_config_changes"):
    _run_phi(ctx, work)
  cfg.model.embed_dim = tiny_config.model.embed_dim
  cfg.phi.steps = 3  # a stage may be extended; with the flag, a changed rate is accepted too
  _run_phi(ctx, work, accept_config_changes=True)
  assert checkpointing.latest_step(work, "phi") == 3
  cfg.phi.steps = 1  # a longer-trained model is never reported as a shorter one
  with pytest.raises(ValueError, match=r"holds step 3, past config.phi.steps=1"):
    _run_phi(ctx, work, accept_config_changes=True)


def test_a_field_added_since_the_checkpoint_at_its_default_is_not_a_change(tiny_config):
  """A checkpoint saved before a config field existed resumes when the field is at its default
  (configs/default.py), and not when it is set to something else."""
  ours = json.loads(json.dumps(tiny_config.to_dict()))
  saved = json.loads(json.dumps(tiny_config.to_dict()))
  del saved["fesgan"]["gan_loss"], saved["fesgan"]["dimg_augment"]
  assert workdir_lib.diff_sections(saved, ours, ["fesgan"]) == []
  ours["fesgan"]["gan_loss"], ours["fesgan"]["dimg_augment"]["rotate"] = "r1", 5.0
  assert workdir_lib.diff_sections(saved, ours, ["fesgan"]) == ["fesgan.dimg_augment", "fesgan.gan_loss"]
  # Present on both sides and different, or dropped from ours: a change, whatever the default.
  saved["fesgan"]["gan_loss"] = "wgan_gp"
  ours["fesgan"]["gan_loss"] = "wgan_gp"
  del ours["fesgan"]["gp_weight"]
  saved["fesgan"]["r1_weight"] = 1.0
  assert workdir_lib.diff_sections(saved, ours, ["fesgan"]) == ["fesgan.dimg_augment", "fesgan.gp_weight",
                                                          "fesgan.r1_weight"]


def test_a_field_added_at_a_default_that_trains_otherwise_is_a_change():
  """Stage 1's warm-up was added on by default: a checkpoint saved before it existed trained
  without one, so it matches a config with the warm-up off and not today's default; so does a
  checkpoint saved before model.g_upsample existed, with the transposed convolutions, and one
  saved before fesgan.warmup.d_steps, with the discriminators in every iteration."""
  from jfesgan import defaults  # pylint: disable=g-import-not-at-top
  ours = workdir_lib.as_dict(defaults.get_config())
  assert ours["fesgan"]["warmup"]["steps"] > 0
  saved = json.loads(json.dumps(ours))
  del saved["fesgan"]["warmup"]
  assert workdir_lib.diff_sections(saved, ours, ["fesgan"]) == ["fesgan.warmup"]
  ours["fesgan"]["warmup"]["steps"] = 0
  ours["fesgan"]["warmup"]["d_steps"] = -1  # (without a warm-up the count changes nothing)
  assert workdir_lib.diff_sections(saved, ours, ["fesgan"]) == []
  # The discriminators' wait, added at -1 (they stepped in every iteration), the default now 400.
  ours = workdir_lib.as_dict(defaults.get_config())
  assert ours["fesgan"]["warmup"]["d_steps"] == 400
  saved = json.loads(json.dumps(ours))
  del saved["fesgan"]["warmup"]["d_steps"]
  assert workdir_lib.diff_sections(saved, ours, ["fesgan"]) == ["fesgan.warmup.d_steps"]
  ours["fesgan"]["warmup"]["d_steps"] = -1
  assert workdir_lib.diff_sections(saved, ours, ["fesgan"]) == []
  # Likewise the decoder's upsampling: added at 'transpose', the default now 'blur'.
  assert ours["model"]["g_upsample"] == "blur"
  del saved["model"]["g_upsample"]
  assert workdir_lib.diff_sections(saved, ours, ["model"]) == ["model.g_upsample"]
  ours["model"]["g_upsample"] = "transpose"
  assert workdir_lib.diff_sections(saved, ours, ["model"]) == []


@pytest.mark.parametrize("field,value,message", [
    ("batch_size", 0, "config.batch_size=0 must be >= 1"),
    ("checkpoint_every", 0, "config.checkpoint_every=0 must be >= 1"),
    ("data.image_size", 37, "data.image_size=37 must be divisible"),
    ("phi.optimizer.name", "adamw", "config.phi.optimizer.name='adamw' must be 'adam' or 'sgd'"),
    ("fesgan.optimizer.g.lr", -1.0, "config.fesgan.optimizer.g.lr=-1.0 must be > 0"),
    ("joint.intra_mode", "rbdp", "config.joint.intra_mode='rbdp' must be one of"),
    ("real.augment.rotate", -5.0, "config.real.augment: ranges must be >= 0"),
    ("fesgan.ema_decay", 1.0, "config.fesgan.ema_decay=1.0 must be in"),
    ("fesgan.cycle_weight", -1.0, "config.fesgan.cycle_weight=-1.0 must be >= 0"),
    ("fesgan.code_expr_weight", -1.0, "config.fesgan.code_expr_weight=-1.0 must be >= 0"),
    ("fesgan.warmup.terms", ("rec", "code_expr"), "config.fesgan.warmup.terms=('rec', 'code_expr') "
     "name code_expr only with fesgan.code_expr_weight > 0"),
    ("fesgan.gan_loss", "wgan", "config.fesgan.gan_loss='wgan' must be one of ('wgan_gp', 'r1'"),
    ("model.g_depth", -1, "config.model.g_depth=-1 must be >= 0"),
    ("model.g_upsample", "bilinear", "config.model.g_upsample='bilinear' must be one of"),
    ("model.r_arch", "vit", "config.model.r_arch='vit' must be one of ('trunk', 'residual')"),
    ("real.intra_weight", -0.1, "config.real.intra_weight=-0.1 must be >= 0"),
    ("joint.synthetic", ("foo",), "config.joint.synthetic=('foo',) must name some of ('prior', "
     "'translation')"),
    ("data.test_fold", 7, "config.data.test_fold=7 must be in [0, data.num_folds="),
    ("data.num_folds", 1, "config.data.num_folds=1 must be >= 2"),
    ("data.num_identities", 1, "config.data.num_identities=1 must be >= data.num_folds="),
    ("batch_size", 4096, "batch_size=4096 is larger than the training set"),
])
def test_config_errors_name_the_field_before_anything_is_written(tiny_config, tmp_path, field,
                                                                 value, message):
  """Every field is checked before any dataset is built or any file written; a rule that needs
  the data (the batch against the training set) as soon as the data is loaded, still before any
  file of the run is written."""
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(tmp_path / "tfds")
  section, _, name = field.rpartition(".")
  target = cfg
  for part in filter(None, section.split(".")):
    target = target[part]
  target[name] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    train.train_and_evaluate(cfg, str(tmp_path / "run"))
  written = os.listdir(tmp_path / "run") if os.path.isdir(tmp_path / "run") else []
  assert not [f for f in written if f != ".lock"], written
  if field != "batch_size" or value < 4096:
    assert not os.path.exists(tmp_path / "tfds"), "a dataset was built before the config check"


@pytest.mark.slow
@pytest.mark.parametrize("override,line", [
    ("--config.stage1.steps=5", "jfesgan: --config.stage1.steps: the config has no field 'stage1' "
     "there (Did you mean \"stages\" instead of \"stage1\"?)"),
    ("--config.phi.stepz=5", "jfesgan: --config.phi.stepz: the config has no field 'stepz' there"),
    ("--config.phi.steps=abc", "jfesgan: flag --config.phi.steps=abc: invalid literal"),
])
def test_a_typo_in_a_config_flag_is_one_line_naming_it(override, line, tmp_path):
  out = subprocess.run([sys.executable, "-m", "jfesgan.main", "--config", "configs/tiny.py",
                        override, "--workdir", str(tmp_path / "run")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1].startswith(line), out.stderr[-500:]
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
def test_a_full_disk_during_a_save_ends_with_one_traceback_and_one_clean_line(tiny_config,
                                                                              tmp_path):
  """A save that fails half-way (here: files may not grow past 48 KiB, RLIMIT_FSIZE, so the
  checkpoint's writes fail with EFBIG as on a full disk) ends the run with exit status 1, the main
  thread's traceback alone (none of the checkpointer's threads' ``Event loop is closed``), and
  the failure as the last line, whole."""
  cfg = tiny_config.copy_and_resolve_references()
  cfg.data.data_dir = str(tmp_path / "tfds")
  pipeline.train_test(cfg.data)  # prepared here: TFDS's own files are larger than the limit
  # The limit is set by a small launcher that then becomes the run (exec), so that this
  # multithreaded process never forks to run Python code.
  limited = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (49152, 49152));"
             " os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
  out = subprocess.run([sys.executable, "-c", limited, "-m", "jfesgan.main", "--config",
                        "configs/tiny.py", f"--config.data.data_dir={cfg.data.data_dir}",
                        "--workdir", str(tmp_path / "run"), "--compilation_cache", ""], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == faults.EXIT_FAILED, out.stderr[-2000:]
  assert out.stderr.count("Traceback") == 1, out.stderr[-4000:]
  assert "Event loop is closed" not in out.stderr and "never retrieved" not in out.stderr
  last = out.stderr.rstrip("\n").split("\n")[-1]
  # Which write meets the limit first depends on the checkpointer's threads' timing: tensorstore
  # then says "Error writing ..." or "Error opening "zarr" driver: Error writing ...", and the
  # spec may follow the OS error. What must hold: the failure is named, whole, on the last line.
  assert last.startswith("jfesgan: failed: ValueError: OUT_OF_RANGE: Error "), last
  assert "Error writing" in last and "File too large" in last, last
  assert last.endswith("[os_error_code='27']"), last
