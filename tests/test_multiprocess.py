"""Two processes on this machine (gloo collectives over 127.0.0.1) run the semi-supervised
pipeline as two hosts would: one of them is sent SIGTERM, both save and exit 0, the same
command continues, and the result equals one process driving two devices."""

import json
import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from lt_jax.checkpoint import Checkpoints, latest_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SEMI = ["--config=configs/digits_lt_semi.py", "--config.model.name=resnet_tiny",
             "--config.augment.name=none", "--config.train.num_epochs=2",
             "--config.train.log_every_steps=5"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def env(devices: int) -> dict:
  flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count", "")
  return {**os.environ, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}"}


def start_two(workdir) -> list[subprocess.Popen]:
  port = free_port()
  return [subprocess.Popen(
      [sys.executable, "run.py", *TINY_SEMI, f"--workdir={workdir}",
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      cwd=ROOT, env=env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]


def finish(procs) -> list[tuple[int, str, str]]:
  out = []
  for p in procs:
    try:
      stdout, stderr = p.communicate(timeout=300)
    finally:
      p.kill()
    out.append((p.returncode, stdout, stderr))
  return out


def final_state(workdir):
  """The final stage's newest checkpoint, restored onto this process's first device (it was
  saved from two devices)."""
  directory = os.path.join(workdir, "final", "checkpoints", "last")
  step = latest_step(directory)
  saved = ocp.StandardCheckpointHandler().metadata(
      epath.Path(os.path.join(directory, str(step), "state")))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        dict(saved), is_leaf=lambda x: hasattr(x, "shape"))
  state, _ = Checkpoints(directory, cleanup=False).restore(target)
  return state


def test_two_processes_stop_on_sigterm_resume_and_equal_one_process(tmp_path):
  two = tmp_path / "two"
  procs = start_two(two)
  for line in procs[0].stdout:  # Both processes joined: send the one that is not 0 SIGTERM.
    if line.startswith("== stage 1/3"):
      break
  procs[1].send_signal(signal.SIGTERM)
  stopped = finish(procs)
  for rc, _, stderr in stopped:
    assert rc == 0, stderr
    assert "stopped by SIGTERM at step 5" in stderr, stderr  # Both at the same step.
  assert not (two / "results.json").exists()
  assert stopped[1][1] == ""  # Only process 0 prints.

  resumed = finish(start_two(two))
  for rc, _, stderr in resumed:
    assert rc == 0, stderr
  stdout = resumed[0][1]
  assert "resumed from" in stdout and "at step 5" in stdout

  one = tmp_path / "one"
  proc = subprocess.run([sys.executable, "run.py", *TINY_SEMI, f"--workdir={one}"], cwd=ROOT,
                        env=env(2), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr

  a, b = final_state(two), final_state(one)
  assert int(a["step"]) == int(b["step"])
  for key in ("params", "batch_stats"):
    flat_a, flat_b = jax.tree.flatten(a[key]), jax.tree.flatten(b[key])
    assert flat_a[1] == flat_b[1]
    for x, y in zip(flat_a[0], flat_b[0]):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  results = [json.loads((d / "results.json").read_text()) for d in (two, one)]
  assert results[0]["final"] == results[1]["final"]
  assert results[0]["stages"]["pseudo_labels"]["num_kept"] == \
      results[1]["stages"]["pseudo_labels"]["num_kept"]
  steps = [[json.loads(line)["step"] for line in open(d / "final" / "metrics.jsonl")]
           for d in (two, one)]
  assert steps[0] == steps[1]  # One writer: no line twice.
