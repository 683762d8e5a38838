"""Two processes on this machine (gloo collectives over 127.0.0.1) run the semi-supervised
pipeline as two hosts would: one of them is sent SIGTERM, both save and exit 0, the same
command continues, and the result equals one process driving two devices bit for bit (and one
device to float rounding)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from conftest import fake_devices_env, read_jsonl
from etils import epath

from lt_jax.checkpoint import Checkpoints, latest_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One epoch per stage: the base stage (3 steps) ends before its first log window, so the stop
# lands inside the final stage (8 steps) at step 5, and the resumed run skips the finished
# base and pseudo-label stages.
TINY_SEMI = ["--config=configs/digits_lt_semi.py", "--config.model.name=resnet_tiny",
             "--config.augment.name=none", "--config.train.num_epochs=1",
             "--config.optim.warmup_epochs=1", "--config.train.log_every_steps=5"]
# The base stage alone, as a plain run: the config the pipeline gives that stage.
TINY_BASE = [*TINY_SEMI, "--config.semi.enabled=False", "--config.train.batch_size=64"]
DEADLINE_S = 240


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Job:
  """run.py processes whose output goes to files (a full pipe could block one of them while
  the other waits for it in a collective)."""

  def __init__(self, logs, workdir, processes: int, devices: int, args=TINY_SEMI,
               started=None, extra_args=None):
    """`started`: the process ids to start (default all); `extra_args`: {id: [flags]}."""
    self.logs, extra = logs, []
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    self.procs = []
    for i in range(processes) if started is None else started:
      if processes > 1:
        extra = [f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={processes}",
                 f"--process_id={i}", *(extra_args or {}).get(i, [])]
      with open(logs / f"out{i}", "w") as out, open(logs / f"err{i}", "w") as err:
        self.procs.append(subprocess.Popen(
            [sys.executable, "run.py", *args, f"--workdir={workdir}", *extra],
            cwd=ROOT, env=fake_devices_env(devices), stdout=out, stderr=err))

  def output(self, i: int) -> tuple[str, str]:
    return (self.logs / f"out{i}").read_text(), (self.logs / f"err{i}").read_text()

  def wait_for(self, text: str) -> None:
    end = time.time() + DEADLINE_S
    while text not in self.output(0)[0]:
      assert time.time() < end and self.procs[0].poll() is None, self.report()
      time.sleep(0.05)

  def finish(self) -> list[tuple[int, str, str]]:
    end = time.time() + DEADLINE_S
    try:
      while any(p.poll() is None for p in self.procs):
        assert time.time() < end, "still running: " + self.report()
        time.sleep(0.1)
    finally:
      for p in self.procs:
        p.kill()
        p.wait()
    return [(p.returncode, *self.output(i)) for i, p in enumerate(self.procs)]

  def report(self) -> str:
    return "\n".join(f"process {i}: {self.output(i)[1][-2000:]}" for i in range(len(self.procs)))


def final_state(workdir, stage="final"):
  """A stage's newest checkpoint, restored onto this process's first device (it was saved
  from two devices)."""
  directory = os.path.join(workdir, stage, "checkpoints", "last")
  step = latest_step(directory)
  saved = ocp.StandardCheckpointHandler().metadata(
      epath.Path(os.path.join(directory, str(step), "state")))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        dict(saved), is_leaf=lambda x: hasattr(x, "shape"))
  state, _ = Checkpoints(directory, cleanup=False).restore(target)
  return state


def leaves(state):
  return {jax.tree_util.keystr(p): np.asarray(v) for key in ("params", "batch_stats")
          for p, v in jax.tree_util.tree_flatten_with_path(state[key])[0]}


def test_two_processes_stop_on_sigterm_resume_and_equal_one_process(tmp_path):
  two = tmp_path / "two"
  job = Job(tmp_path / "logs1", two, processes=2, devices=1)
  job.wait_for("== stage 3/3")  # In the final stage: send the process that is not 0 SIGTERM.
  job.procs[1].send_signal(signal.SIGTERM)
  steps = set()
  for rc, _, stderr in job.finish():
    assert rc == 0, stderr
    steps |= set(re.findall(r"stopped by SIGTERM at step (\d+);", stderr))
  assert steps == {"5"}  # Both stopped, after the same step.
  assert not (two / "results.json").exists()
  assert job.output(1)[0] == ""  # Only process 0 prints.

  resumed = Job(tmp_path / "logs2", two, processes=2, devices=1).finish()
  for rc, _, stderr in resumed:
    assert rc == 0, stderr
  stdout = resumed[0][1]
  assert "already holds a finished run" in stdout and "at step 5" in stdout

  # One process with both devices. (One device against eight, stage by stage, is
  # test_device_count.py's.)
  one = tmp_path / "one"
  for rc, _, stderr in Job(tmp_path / "logs_one", one, 1, 2, TINY_SEMI).finish():
    assert rc == 0, stderr

  a, b = leaves(final_state(two)), leaves(final_state(one))
  assert int(final_state(two)["step"]) == int(final_state(one)["step"])
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  results = [json.loads((d / "results.json").read_text()) for d in (two, one)]
  assert results[0]["final"] == results[1]["final"]
  labels = [{k: v for k, v in r["stages"]["pseudo_labels"].items()
             if k not in ("file", "wall_time_s")} for r in results]
  assert labels[0] == labels[1]
  lines = [[r["step"] for r in read_jsonl(d / "final" / "metrics.jsonl")]
           for d in (two, one)]
  assert lines[0] == lines[1]  # One writer: no line twice.


def one_error_line(stderr: str) -> str:
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert "Traceback" not in stderr and len(lines) == 1, stderr
  assert lines[0].startswith("error: "), stderr
  return lines[0]


def test_processes_started_with_different_configs_all_stop_naming_the_difference(tmp_path):
  # Process 1 with focal, process 0 with CE: both would have trained a mix and exited 0.
  workdir = tmp_path / "run"
  job = Job(tmp_path / "logs", workdir, processes=2, devices=1,
            extra_args={1: ["--config.loss.name=focal"]})
  for rc, _, stderr in job.finish():
    assert rc == 1
    assert "process 1 in loss.name ('focal' there, 'ce' on process 0)" in one_error_line(stderr)
  assert not (workdir / "config.json").exists()


def test_a_process_that_never_joins_is_named_after_the_join_timeout(tmp_path):
  job = Job(tmp_path / "logs", tmp_path / "run", processes=2, devices=1, started=[0],
            extra_args={0: ["--join_timeout=3"]})
  start = time.time()
  [(rc, _, stderr)] = job.finish()
  assert rc == 1 and time.time() - start < 60  # Not jax's 300 s, not a C++ abort.
  line = one_error_line(stderr)
  assert "process 0 waited 3 s (--join_timeout)" in line and "process 1 did not join" in line


def test_a_process_lost_mid_run_is_one_line_naming_the_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  job = Job(tmp_path / "logs", workdir, processes=2, devices=1,
            args=[*TINY_BASE, "--config.train.num_epochs=500"])
  job.wait_for("epoch 2/500")  # After the first epoch's checkpoint.
  job.procs[1].kill()
  rc, _, stderr = job.finish()[0]
  assert rc == 1
  line = one_error_line(stderr)
  assert "another process of this 2-process job stopped" in line
  assert f"newest checkpoint under {workdir}" in line, line

