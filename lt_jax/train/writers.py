"""Where training scalars go: TensorBoard events (tensorboardX, no TensorFlow), a JSON-lines log,
and progress lines with images/s and ETA."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from tensorboardX import SummaryWriter

from lt_jax import io_utils, parallel


class MetricWriter:
  """Writes each record to TensorBoard under workdir/tb and to workdir/metrics.jsonl (process 0
  of a multi-process run; the others hold the same records and write nothing)."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self._tb = self._jsonl = None
    if not parallel.is_main_process():
      return
    self._drop_after(resume_step)
    self._tb = SummaryWriter(os.path.join(workdir, "tb"))
    self._jsonl = open(self.jsonl_path, "a")

  def _drop_after(self, step: int) -> None:
    """On resume, forgets records of the steps that the restored checkpoint did not keep, and
    a last line that a kill or a full disk cut off half-way."""
    if not os.path.exists(self.jsonl_path):
      return
    with open(self.jsonl_path) as f:
      lines = [line for line in f if _step_of(line) is not None and _step_of(line) <= step]
    io_utils.atomic_write_text(self.jsonl_path, "".join(lines))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if self._tb is None:
      return
    for name, value in scalars.items():
      if isinstance(value, (int, float)):
        self._tb.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._jsonl.close()


def last_recorded_step(workdir: str) -> int | None:
  """The last step workdir/metrics.jsonl records; None without a record."""
  steps = []
  with contextlib.suppress(FileNotFoundError):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      steps = [s for s in map(_step_of, f) if s is not None]
  return max(steps) if steps else None


def _step_of(line: str) -> int | None:
  """The step of one metrics.jsonl record; None for a blank or torn line."""
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return None


class Progress:
  """Step counter that reports images/s since the last report and the ETA of the run."""

  def __init__(self, total_steps: int, batch_size: int, start_step: int = 0, stream=None,
               label: str = ""):
    self.total_steps = total_steps
    self.label = label
    self.batch_size = batch_size
    self.stream = stream or sys.stdout
    self._t0 = self._last_t = time.perf_counter()
    self._first_step = self._last_step = start_step
    self.train_seconds = 0.0  # Time inside training steps only, for the images/s summary.

  def restart_window(self, step: int) -> None:
    """Starts a new images/s window (after an evaluation, which is not training time)."""
    self._last_t, self._last_step = time.perf_counter(), step

  def rate(self, step: int) -> float:
    now = time.perf_counter()
    images = (step - self._last_step) * self.batch_size
    rate = images / max(now - self._last_t, 1e-9)
    self._last_t, self._last_step = now, step
    return rate

  def eta_seconds(self, step: int) -> float:
    done = step - self._first_step
    if done <= 0:
      return float("nan")
    per_step = (time.perf_counter() - self._t0) / done
    return per_step * (self.total_steps - step)

  def report(self, epoch: int, num_epochs: int, step: int, scalars: dict[str, float]) -> float:
    rate = self.rate(step)
    eta = self.eta_seconds(step)
    parts = [self.label] if self.label else []
    parts += [f"epoch {epoch + 1}/{num_epochs}", f"step {step}/{self.total_steps}"]
    parts += [f"{k} {v:.4g}" for k, v in scalars.items()]
    parts += [f"{rate:,.0f} img/s", f"ETA {format_seconds(eta)}"]
    print(" | ".join(parts), file=self.stream, flush=True)
    return rate


def format_seconds(seconds: float) -> str:
  if seconds != seconds:  # NaN: nothing measured yet.
    return "?"
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
