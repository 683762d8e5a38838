"""Faults a long run meets: kill -9 in the middle of a checkpoint write, stop requests, and a
multi-process launch described wrongly."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lt_jax import parallel
from lt_jax.checkpoint import Checkpoints
from lt_jax.errors import ConfigError
from lt_jax.train import preemption

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Saves steps 1, 2, ... into argv[1] (continuing after the newest) until it is killed. Each
# state is a function of its step alone, so a restored one can be checked exactly; 32 MB of
# arrays make a write take long enough to be cut.
SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from lt_jax.checkpoint import Checkpoints

    def state_at(step):
      base = np.arange(2_000_000, dtype=np.float32)
      return {"step": np.int32(step), "w": [base * step + i for i in range(4)]}

    checkpoints = Checkpoints(sys.argv[1])
    step = (checkpoints.latest_step() or 0) + 1
    while True:
      checkpoints.save(step, state_at(step), {"step": step})
      checkpoints.wait()
      step += 1
""")


def expected(step):
  base = np.arange(2_000_000, dtype=np.float32)
  return [base * step + i for i in range(4)]


def kill_while_writing(directory, delay: float) -> bool:
  """Starts the saver and kills it with SIGKILL `delay` s after a save's temporary folder
  appears; True when that folder was still there (the write was cut)."""
  proc = subprocess.Popen([sys.executable, "-c", SAVER, str(directory)], cwd=ROOT,
                          stderr=subprocess.DEVNULL)
  start = (Checkpoints(str(directory), cleanup=False).latest_step() or 0) if \
      directory.exists() else 0
  try:
    deadline = time.time() + 120
    while time.time() < deadline:  # Wait for the second save of this process to begin.
      names = os.listdir(directory) if directory.exists() else []
      started = [n for n in names if "tmp" in n and n.split(".")[0] == str(start + 2)]
      if started:
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return os.path.exists(os.path.join(directory, started[0]))
      time.sleep(0.0005)
    raise AssertionError("the saver never started its second save")
  finally:
    proc.kill()
    proc.wait()


def test_kill_9_during_checkpoint_writes_never_restores_wrongly(tmp_path):
  directory = tmp_path / "checkpoints"
  cut = 0
  for delay in (0.0, 0.05, 0.5):  # Early in a write, later in it, and about when it ends.
    cut += kill_while_writing(directory, delay)
    checkpoints = Checkpoints(str(directory))  # Opened for training: clears the torn write.
    try:
      step = checkpoints.latest_step()
      state, meta = checkpoints.restore()
    finally:
      checkpoints.close()
    assert meta["step"] == step == int(state["step"])
    for got, want in zip(state["w"], expected(step)):
      np.testing.assert_array_equal(np.asarray(got), want)
    assert not [n for n in os.listdir(directory) if "tmp" in n]
  assert cut >= 2  # At least two kills landed inside a write.


def test_request_keeps_the_strongest_signal_and_clear_forgets_it():
  try:
    preemption.request("SIGINT")
    preemption.request("SIGTERM")
    preemption.request("SIGINT")
    assert preemption.agreed() == "SIGTERM"
    with pytest.raises(ValueError, match="SIGKILL"):
      preemption.request("SIGKILL")
  finally:
    preemption.clear()
  assert preemption.agreed() is None


def test_a_second_ctrl_c_is_recorded_and_outlives_clear():
  previous = signal.getsignal(signal.SIGINT)
  try:
    preemption._on_signal(signal.SIGINT, None)  # The first asks for a stop at the next window.
    assert preemption.agreed() == "SIGINT" and not preemption.stopped_at_once()
    with pytest.raises(KeyboardInterrupt):
      preemption._on_signal(signal.SIGINT, None)
    preemption.clear()
    assert preemption.stopped_at_once() and preemption.agreed() is None
  finally:
    signal.signal(signal.SIGINT, previous)
    preemption.clear()
    preemption._stopped_at_once = False


# A second Ctrl-C whose KeyboardInterrupt a C extension turned into SystemError (seen inside
# JAX's dtype canonicalisation): run.py still reports the stop in one line and exits 130.
WRAPPED_INTERRUPT = textwrap.dedent("""
    import signal, sys
    from absl import app
    import lt_jax.pipeline
    import run
    from lt_jax.train import preemption

    def fake_run(config, workdir):
      preemption._on_signal(signal.SIGINT, None)
      try:
        preemption._on_signal(signal.SIGINT, None)
      except KeyboardInterrupt as e:
        raise SystemError("a C function returned a result with an exception set") from e

    lt_jax.pipeline.run = fake_run
    sys.argv = ["run.py", "--config=configs/digits_lt_ce.py", "--workdir=" + sys.argv[1]]
    app.run(run.main, flags_parser=run.parse_flags)
""")


def test_run_py_reports_a_wrapped_second_ctrl_c_in_one_line(tmp_path):
  proc = subprocess.run([sys.executable, "-c", WRAPPED_INTERRUPT, str(tmp_path / "w")],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 130, proc.stderr
  assert "Traceback" not in proc.stderr and "SystemError" not in proc.stderr, proc.stderr
  assert "interrupted; the run in" in proc.stderr, proc.stderr


@pytest.mark.parametrize("args, fragments", [
    (dict(num_processes=2), ["--coordinator_address", "--process_id", "--distributed"]),
    (dict(coordinator_address="127.0.0.1:1", num_processes=2, process_id=2),
     ["--process_id=2 is not in 0 .. 1"]),
])
def test_a_multi_process_launch_described_wrongly_is_named(args, fragments):
  with pytest.raises(ConfigError) as e:
    parallel.initialize_distributed(**args)
  for fragment in fragments:
    assert fragment in str(e.value)


def test_a_non_integer_process_count_in_the_environment_is_named(monkeypatch):
  monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
  with pytest.raises(ConfigError, match="JAX_NUM_PROCESSES='two' is not an integer"):
    parallel.initialize_distributed()
